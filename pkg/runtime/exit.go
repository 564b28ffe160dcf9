package runtime

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
)

// ioDrainTimeout bounds how long the exit waits for the output pipes to
// close: a daemonised grandchild may hold them open forever.
const ioDrainTimeout = 2 * time.Second

// Start makes a created container exec its process.
func (m *Manager) Start(id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	st := c.status()
	if st.Status != StatusCreated || c.lc == nil {
		return fmt.Errorf("start container %q in state %s: %w", id, st.Status, errdefs.ErrFailedPrecondition)
	}
	started := time.Now()
	if err := c.lc.Exec(); err != nil {
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

// watchOOM remembers whether the kernel OOM killer fired in the container's
// memory cgroup; the exit is reported as OOMKilled only together with a SIGKILL.
func (m *Manager) watchOOM(c *container) {
	ch, err := c.lc.NotifyOOM()
	if err != nil {
		m.log.Warn("watch container OOM events", "id", c.id, "err", err)
		return
	}
	go func() {
		for range ch {
			c.oom.Store(true)
		}
	}()
}

// monitor waits for the container's init, drains its output and records the
// exit, then wakes every Wait.
func (m *Manager) monitor(c *container) {
	ps, err := c.proc.Wait()
	pid, _ := c.proc.Pid()
	m.reaper.disown(pid)
	finished := time.Now()
	if ps == nil {
		m.log.Error("wait for container init", "id", c.id, "err", err)
	}
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
	// An OOM event can trail the SIGKILL it caused by a little.
	code, signaled := exitCode(ps)
	if signaled == syscall.SIGKILL && !c.oom.Load() {
		time.Sleep(50 * time.Millisecond)
	}
	m.update(c, func(st *Status) {
		st.Status = StatusStopped
		st.ExitCode = code
		st.FinishedAt = finished
		st.OOMKilled = signaled == syscall.SIGKILL && c.oom.Load()
		st.Reason = exitReason(code, st.OOMKilled)
		if ps == nil {
			st.Message = fmt.Sprintf("wait for init: %v", err)
		}
	})
	close(c.exited)
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
