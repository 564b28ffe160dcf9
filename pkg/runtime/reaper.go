package runtime

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// SetSubreaper makes the calling process the reaper of its orphaned
// descendants: a container's init is reparented to the shim when
// libcontainer's intermediate process exits, and the shim must wait for it.
func SetSubreaper() error {
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fmt.Errorf("become child subreaper: %w", err)
	}
	return nil
}

// reaper collects zombies that nobody waits for (orphans of host-pid
// containers) without stealing the exits that others wait for: the
// container inits (owned, waited by monitor) and libcontainer's own
// intermediate children (spawned while a hold is taken).
type reaper struct {
	log   *slog.Logger
	spawn sync.RWMutex // read-held while libcontainer spawns and waits

	mu    sync.Mutex
	owned map[int]bool
}

func newReaper(log *slog.Logger) *reaper {
	return &reaper{log: log, owned: map[int]bool{}}
}

// hold keeps the reaper away until the returned release is called.
func (r *reaper) hold() (release func()) {
	r.spawn.RLock()
	return r.spawn.RUnlock
}

func (r *reaper) own(pid int) {
	r.mu.Lock()
	r.owned[pid] = true
	r.mu.Unlock()
}

func (r *reaper) disown(pid int) {
	r.mu.Lock()
	delete(r.owned, pid)
	r.mu.Unlock()
}

func (r *reaper) run(ctx context.Context) {
	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGCHLD)
	defer signal.Stop(sigc)
	// SIGCHLD can coalesce; a slow tick catches what a merged signal hid.
	tick := time.NewTicker(30 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-sigc:
		case <-tick.C:
		}
		r.reapOrphans()
	}
}

func (r *reaper) reapOrphans() {
	r.spawn.Lock()
	defer r.spawn.Unlock()
	for _, pid := range zombieChildren(os.Getpid()) {
		r.mu.Lock()
		owned := r.owned[pid]
		r.mu.Unlock()
		if owned {
			continue
		}
		var ws unix.WaitStatus
		if _, err := unix.Wait4(pid, &ws, unix.WNOHANG, nil); err == nil {
			r.log.Debug("reaped orphan", "pid", pid, "status", ws.ExitStatus())
		}
	}
}

// zombieChildren lists the zombie children of parent by scanning /proc:
// waitid(WNOWAIT) would only ever show the first one, which may be owned.
func zombieChildren(parent int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var out []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// Fields after the parenthesised comm: state ppid ...
		i := bytes.LastIndexByte(data, ')')
		if i < 0 {
			continue
		}
		fields := bytes.Fields(data[i+1:])
		if len(fields) < 2 || string(fields[0]) != "Z" {
			continue
		}
		if ppid, err := strconv.Atoi(string(fields[1])); err == nil && ppid == parent {
			out = append(out, pid)
		}
	}
	return out
}
