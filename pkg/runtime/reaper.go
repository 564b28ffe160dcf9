package runtime

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
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
	log *slog.Logger
	// candidates lists the pids that may be this process's children: its
	// children files where the kernel has them, else every pid on the node.
	candidates func() []string
	spawn      sync.RWMutex // read-held while libcontainer spawns and waits

	mu    sync.Mutex
	owned map[int]bool
}

func newReaper(log *slog.Logger) *reaper {
	r := &reaper{log: log, owned: map[int]bool{}, candidates: allPIDs}
	// Decided once: the children files (CONFIG_PROC_CHILDREN) make a reap cost the
	// number of children instead of the number of processes on the node, on every SIGCHLD.
	if _, err := os.Stat(fmt.Sprintf("/proc/self/task/%d/children", unix.Gettid())); err == nil {
		r.candidates = ownChildren
	}
	return r
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
	for _, pid := range zombieChildren(os.Getpid(), r.candidates()) {
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

// zombieChildren lists the zombie children of parent among the candidate pids:
// waitid(WNOWAIT) would only ever show the first one, which may be owned.
func zombieChildren(parent int, candidates []string) []int {
	var out []int
	for _, name := range candidates {
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		data, err := os.ReadFile("/proc/" + name + "/stat")
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

// allPIDs lists every process on the node.
func allPIDs() []string {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// ownChildren lists the children of every thread of this process (an orphan is
// reparented to one of them). A child that changes while a file is read may be
// missed; the next SIGCHLD or the reaper's tick finds it.
func ownChildren() []string {
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return nil
	}
	var names []string
	for _, t := range tasks {
		data, err := os.ReadFile("/proc/self/task/" + t.Name() + "/children")
		if err != nil {
			continue
		}
		names = append(names, strings.Fields(string(data))...)
	}
	return names
}
