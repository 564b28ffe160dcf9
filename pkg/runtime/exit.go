package runtime

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/cgroups"
)

// ioDrainTimeout bounds how long the exit waits for the output pipes to
// close. Leftovers in the container's cgroup are killed before the drain, so
// only a process outside it that was handed the pipe can hold it this long.
const ioDrainTimeout = 2 * time.Second

// leftoverTimeout bounds the wait for the killed leftovers to leave the
// cgroup; only a task stuck in the kernel outlives it.
const leftoverTimeout = 2 * time.Second

// Start makes a created container exec its process.
func (m *Manager) Start(id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	st := c.status()
	if st.Status != StatusCreated || (c.lc == nil && c.oci == nil) {
		return fmt.Errorf("start container %q in state %s: %w", id, st.Status, errdefs.ErrFailedPrecondition)
	}
	if plan := c.takePending(); plan != nil {
		return m.startRestore(c, plan)
	}
	started := time.Now()
	if err := m.start(c); err != nil {
		return fmt.Errorf("start container %q: %w", id, err)
	}
	m.update(c, func(st *Status) {
		// The init may already have exited (a short-lived command): keep "stopped".
		if st.Status == StatusCreated {
			st.Status = StatusRunning
		}
		st.StartedAt = started
	})
	return nil
}

func (m *Manager) start(c *container) error {
	if c.oci != nil {
		return m.startOCI(c)
	}
	return c.lc.Exec()
}

// waitInit waits for the container's init (a child of the shim with either runtime).
func (c *container) waitInit() (*os.ProcessState, int, error) {
	if c.oci != nil {
		ps, err := c.oci.init.Wait()
		return ps, c.oci.init.Pid, err
	}
	ps, err := c.proc.Wait()
	pid, _ := c.proc.Pid()
	return ps, pid, err
}

// oomKilled tells whether the kernel OOM killer fired in the container's memory cgroup. It is
// read when the init has died of SIGKILL: the kernel counts the kill before it sends the
// signal, so the count is complete by then (no asynchronous notification to wait for).
func (m *Manager) oomKilled(c *container) bool {
	if c.cgroupPaths == nil {
		return false
	}
	n, err := cgroups.OOMKills(c.cgroupPaths)
	if err != nil {
		m.log.Warn("read container OOM kills", "id", c.id, "err", err)
		return false
	}
	return n > 0
}

// monitor is the container's one exit path: it waits for the init, kills
// what the init left behind, drains the output and records the exit, then
// wakes every Wait. The order matters: a leftover holding stdout would
// otherwise keep the drain (and so the reported exit) waiting.
func (m *Manager) monitor(c *container) {
	ps, pid, err := c.waitInit()
	m.reaper.disown(pid)
	finished := time.Now()
	if ps == nil {
		m.log.Error("wait for container init", "id", c.id, "err", err)
	}
	m.killLeftovers(c)
	select {
	case <-c.ioDone:
	case <-time.After(ioDrainTimeout):
		m.log.Warn("container output still open after exit; closing it", "id", c.id)
		c.closeIO()
		<-c.ioDone
	}
	c.closeIO()
	if err := c.log.Close(); err != nil {
		m.log.Warn("close container log", "id", c.id, "err", err)
	}
	code, signaled := exitCode(ps)
	oom := signaled == syscall.SIGKILL && m.oomKilled(c)
	m.update(c, func(st *Status) {
		st.Status = StatusStopped
		st.ExitCode = code
		st.FinishedAt = finished
		st.OOMKilled = oom
		st.Reason = exitReason(code, st.OOMKilled)
		if ps == nil {
			st.Message = fmt.Sprintf("wait for init: %v", err)
		}
	})
	close(c.exited)
}

// killLeftovers ends every process left in the container's cgroup once its
// init is gone, so that the container is stopped as a whole. With a private
// PID namespace the kernel has already done it (the death of a namespace's
// init kills the namespace, pid_namespaces(7)); in the pod's or the host's
// PID namespace nothing does, and the leftovers would hold the container's
// output pipes and cgroup until the pod goes. libcontainer's Signal(SIGKILL)
// on a container without a private PID namespace kills its whole cgroup
// (cgroup.kill, or freeze, kill each, thaw), as runc kill does; with a
// private one it reports ErrNotRunning, nothing being left to kill.
func (m *Manager) killLeftovers(c *container) {
	if c.oci != nil {
		m.killLeftoversOCI(c)
		return
	}
	if c.lc == nil {
		return
	}
	if err := c.lc.Signal(unix.SIGKILL); err != nil {
		if !isNotRunning(err) {
			m.log.Warn("kill processes left in container", "id", c.id, "err", err)
		}
		return
	}
	// SIGKILL is delivered at once but acted on asynchronously: wait for
	// the cgroup to empty so that the reported exit means "nothing runs".
	deadline := time.Now().Add(leftoverTimeout)
	for {
		pids, err := c.lc.Processes()
		if err != nil || len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			m.log.Warn("processes left in container survive SIGKILL", "id", c.id, "pids", pids)
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// update changes a container's status and persists it under one lock, so
// records are written in the order the changes happened.
func (m *Manager) update(c *container, fn func(*Status)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	fn(&c.st)
	if err := m.records.save(c.st); err != nil {
		m.log.Warn("persist container state", "id", c.id, "err", err)
	}
}

func (c *container) closeIO() {
	if c.io != nil {
		c.io.closeParentEnds()
	}
}

// exitCode follows the shell convention the kubelet expects: 128+signal for
// a process killed by a signal.
func exitCode(ps *os.ProcessState) (int32, syscall.Signal) {
	if ps == nil {
		return 255, 0
	}
	ws, ok := ps.Sys().(syscall.WaitStatus)
	if !ok {
		return int32(ps.ExitCode()), 0
	}
	if ws.Signaled() {
		return 128 + int32(ws.Signal()), ws.Signal()
	}
	return int32(ws.ExitStatus()), 0
}

func exitReason(code int32, oomKilled bool) string {
	switch {
	case oomKilled:
		return ReasonOOMKilled
	case code == 0:
		return ReasonCompleted
	default:
		return ReasonError
	}
}

// isNotRunning reports libcontainer's ways of saying the process is gone.
func isNotRunning(err error) bool {
	return errors.Is(err, libcontainer.ErrNotRunning) || errors.Is(err, os.ErrProcessDone)
}
