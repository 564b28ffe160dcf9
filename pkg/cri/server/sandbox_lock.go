package server

import "sync"

// sandboxLocks orders container creation against sandbox removal, per sandbox. Creates in one
// pod share the lock and may run side by side; RemovePodSandbox holds it alone. So a create
// either completes before the removal starts (and the removal then removes its container) or
// starts after it and finds the sandbox gone: no container, mount or lease outlives its pod.
type sandboxLocks struct {
	mu sync.Mutex
	m  map[string]*sandboxLock
}

type sandboxLock struct {
	rw   sync.RWMutex
	refs int // holders and waiters; the entry is dropped at zero
}

// rlock takes the sandbox's lock shared; call the result to release it.
func (k *sandboxLocks) rlock(id string) (unlock func()) {
	l := k.ref(id)
	l.rw.RLock()
	return func() { l.rw.RUnlock(); k.unref(id, l) }
}

// lock takes the sandbox's lock exclusively; call the result to release it.
func (k *sandboxLocks) lock(id string) (unlock func()) {
	l := k.ref(id)
	l.rw.Lock()
	return func() { l.rw.Unlock(); k.unref(id, l) }
}

func (k *sandboxLocks) ref(id string) *sandboxLock {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.m == nil {
		k.m = map[string]*sandboxLock{}
	}
	l := k.m[id]
	if l == nil {
		l = &sandboxLock{}
		k.m[id] = l
	}
	l.refs++
	return l
}

func (k *sandboxLocks) unref(id string, l *sandboxLock) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if l.refs--; l.refs == 0 {
		delete(k.m, id)
	}
}
