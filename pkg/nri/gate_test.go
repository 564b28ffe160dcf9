package nri

import (
	"sync"
	"testing"
	"time"
)

// adaptationLock stands in for the adaptation's sync lock: a synchronization holds it from
// the sync callback until the plugin is registered.
type adaptationLock struct{ sync.RWMutex }

func (l *adaptationLock) settled() func() {
	l.RLock()
	return l.RUnlock
}

// returnsWithin reports whether fn returns within d.
func returnsWithin(d time.Duration, fn func()) bool {
	done := make(chan struct{})
	go func() { fn(); close(done) }()
	select {
	case <-done:
		return true
	case <-time.After(d):
		return false
	}
}

func TestGateSyncWaitsForHolders(t *testing.T) {
	g := newGate((&adaptationLock{}).settled)
	leave := g.enter()
	synced := make(chan error, 1)
	go func() { synced <- g.closeForSync() }()
	select {
	case <-synced:
		t.Fatal("synchronization started while a state change was under way")
	case <-time.After(100 * time.Millisecond):
	}
	leave()
	select {
	case err := <-synced:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("synchronization still waiting after the last holder left")
	}
}

// TestGateNestedHoldsDoNotDeadlock: a holder that needs another hold (an exit notification
// inside StopContainer, a watcher a holder waits for) gets it while a synchronization waits.
// A writer-preferring lock such as the adaptation's BlockPluginSync deadlocks here.
func TestGateNestedHoldsDoNotDeadlock(t *testing.T) {
	g := newGate((&adaptationLock{}).settled)
	leave := g.enter()
	synced := make(chan error, 1)
	go func() { synced <- g.closeForSync() }()
	time.Sleep(50 * time.Millisecond) // let the synchronization start waiting

	var inner func()
	if !returnsWithin(2*time.Second, func() { inner = g.enter() }) {
		t.Fatal("a nested hold blocked behind a waiting synchronization")
	}
	inner()
	leave()
	if err := <-synced; err != nil {
		t.Fatal(err)
	}
}

func TestGateHoldersWaitForRegistration(t *testing.T) {
	lock := &adaptationLock{}
	g := newGate(lock.settled)
	// The adaptation takes its lock, then calls back into sync.
	lock.Lock()
	if err := g.closeForSync(); err != nil {
		t.Fatal(err)
	}
	entered := make(chan func(), 1)
	go func() { entered <- g.enter() }()
	select {
	case <-entered:
		t.Fatal("a state change went ahead before the synchronized plugin was registered")
	case <-time.After(100 * time.Millisecond):
	}
	lock.Unlock() // plugin registered
	select {
	case leave := <-entered:
		leave()
	case <-time.After(5 * time.Second):
		t.Fatal("state change still blocked after registration")
	}
	// The gate is open again: the next hold takes the fast path, and the next
	// synchronization does not wait for anyone.
	g.enter()()
	lock.Lock()
	defer lock.Unlock()
	if !returnsWithin(2*time.Second, func() { _ = g.closeForSync() }) {
		t.Fatal("second synchronization blocked with no holder")
	}
}

func TestGateStopFailsWaitingSync(t *testing.T) {
	g := newGate((&adaptationLock{}).settled)
	leave := g.enter()
	defer leave()
	synced := make(chan error, 1)
	go func() { synced <- g.closeForSync() }()
	time.Sleep(50 * time.Millisecond)
	g.stop()
	select {
	case err := <-synced:
		if err == nil {
			t.Fatal("synchronization succeeded after stop")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("stop left the synchronization waiting")
	}
}
