package nri

import (
	"errors"
	"sync"
)

// errStopped fails a plugin synchronization that was waiting when NRI stopped.
var errStopped = errors.New("nri stopped")

// gate keeps state changes and plugin synchronization apart, so that a plugin connecting
// while pods and containers come and go learns about each of them exactly one way: in its
// Synchronize snapshot (the change happened before it) or as an event (after it registered).
//
//	open --sync: wait for holders--> syncing --adaptation registered the plugin--> open
//
// A holder is anything between a state change and the event that announces it: a CRI call
// that sends an event before it stores the change (RunPodSandbox, CreateContainer), and
// every event sent to plugins. Holders nest: a CRI call holding the gate stops a container,
// whose exit notification enters it again; the exit watcher records an exit that a holding
// StopContainer waits for. So the gate prefers holders: a synchronization waits until none
// is left and only then closes the gate to new ones. The NRI adaptation's own
// BlockPluginSync does the opposite (a waiting synchronization blocks new holders, a
// sync.RWMutex), which deadlocks as soon as one holder waits for another.
//
// Synchronization ends after the sync callback returns, when the adaptation has added the
// plugin to the set that receives events; the adaptation marks that end by releasing its
// own sync lock. settled waits for it.
type gate struct {
	mu      sync.Mutex
	cond    *sync.Cond
	holders int
	syncing bool // a snapshot is being taken or sent; new holders wait for settled
	stopped bool
	// settled blocks until no synchronization is in progress in the adaptation and returns
	// a func that lets one start again; no synchronization starts in between.
	settled func() (release func())
}

func newGate(settled func() (release func())) *gate {
	g := &gate{settled: settled}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// enter holds off synchronization until the returned func is called (once).
func (g *gate) enter() (leave func()) {
	g.mu.Lock()
	if g.syncing {
		// Wait outside our lock: the synchronization in progress may need it to finish.
		g.mu.Unlock()
		release := g.settled()
		g.mu.Lock()
		// While release is pending no synchronization runs, so the one we waited for (and
		// any that followed it) is over and its plugin registered.
		g.syncing = false
		g.holders++
		g.mu.Unlock()
		release()
		return g.leave
	}
	g.holders++
	g.mu.Unlock()
	return g.leave
}

func (g *gate) leave() {
	g.mu.Lock()
	g.holders--
	if g.holders == 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

// closeForSync waits for the holders to leave and closes the gate to new ones until the
// adaptation has registered the plugin being synchronized. The adaptation calls the sync
// callback, and so this, with its sync lock held: one synchronization at a time.
func (g *gate) closeForSync() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	for g.holders > 0 && !g.stopped {
		g.cond.Wait()
	}
	if g.stopped {
		return errStopped
	}
	g.syncing = true
	return nil
}

// stop fails a synchronization waiting for holders; NRI is shutting down.
func (g *gate) stop() {
	g.mu.Lock()
	g.stopped = true
	g.cond.Broadcast()
	g.mu.Unlock()
}
