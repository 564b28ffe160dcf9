package server

import (
	"sync"
	"time"
)

// killMarks remembers when the agent itself SIGKILLed a container (StopContainer after its
// grace period). The shim reports OOMKilled when the init died of SIGKILL and the memory
// cgroup saw an OOM kill; after a child was OOM-killed, the agent's own SIGKILL would match
// that rule too. An exit that came after the agent's SIGKILL is therefore not an OOM kill;
// one the shim timed before it still is.
type killMarks struct {
	mu  sync.Mutex
	ids map[string]time.Time
}

func (k *killMarks) mark(id string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.ids == nil {
		k.ids = map[string]time.Time{}
	}
	if _, ok := k.ids[id]; !ok {
		k.ids[id] = time.Now()
	}
}

// oomKilled filters the shim's OOM verdict for an exit at finished and forgets the mark: an
// exit is recorded once.
func (k *killMarks) oomKilled(id string, oom bool, finished time.Time) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	at, ok := k.ids[id]
	delete(k.ids, id)
	if !oom || !ok {
		return oom
	}
	return !finished.IsZero() && finished.Before(at)
}
