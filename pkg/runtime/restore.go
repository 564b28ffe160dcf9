package runtime

import (
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
)

// A container created for a restore has a libcontainer container (cgroup config, no
// process) and its stdio pipes, but no init: Start runs the CRIU restore, which recreates
// the checkpointed processes with their memory and open files, and only then does the
// container get its monitor and output copying, as a started one.
//
//	created (pending restore) --Start--> running --init exits--> stopped
//	created (pending restore) --Kill/Delete, or a failed restore--> stopped
type restorePlan struct {
	imagesDir, workDir string
}

// prepareRestore is create's path for a container restored from CRIU images.
func (m *Manager) prepareRestore(opts CreateOptions, c *container, config *configs.Config, proc *libcontainer.Process) (*container, error) {
	if opts.Tty {
		return nil, fmt.Errorf("restore container %q: it has a tty: berth does not restore terminals: %w", opts.ID, errdefs.ErrFailedPrecondition)
	}
	lc, err := libcontainer.Create(m.opts.Root, opts.ID, config)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return nil, fmt.Errorf("create container %q: stale libcontainer state: %w", opts.ID, errdefs.ErrAlreadyExists)
		}
		return nil, fmt.Errorf("create container %q: %w", opts.ID, err)
	}
	pio, err := setupIO(proc, opts)
	if err != nil {
		_ = lc.Destroy()
		return nil, err
	}
	proc.Init = true
	c.lc, c.proc, c.io, c.stdin = lc, proc, pio, pio.stdin
	c.pending = &restorePlan{imagesDir: opts.RestoreImages, workDir: opts.RestoreWork}
	c.st = Status{ID: opts.ID, Status: StatusCreated, CreatedAt: time.Now(), Bundle: opts.Bundle, LogPath: opts.LogPath}
	if err := m.records.save(c.st); err != nil {
		m.log.Warn("persist container state", "id", opts.ID, "err", err)
	}
	return c, nil
}

// takePending returns and clears a container's pending restore, so that exactly one of
// Start, Kill and Delete acts on it.
func (c *container) takePending() *restorePlan {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.pending
	c.pending = nil
	return p
}

// startRestore runs the CRIU restore of a pending container.
func (m *Manager) startRestore(c *container, plan *restorePlan) error {
	started := time.Now()
	release := m.reaper.hold()
	err := c.lc.Restore(c.proc, &libcontainer.CriuOpts{ImagesDirectory: plan.imagesDir, WorkDirectory: plan.workDir})
	if err == nil {
		pid, _ := c.proc.Pid()
		m.reaper.own(pid)
	}
	release()
	c.io.closeChildEnds()
	if err != nil {
		err = fmt.Errorf("restore container %q: %w%s", c.id, err, criuErrors(filepath.Join(plan.imagesDir, "restore.log")))
		m.abandon(c, err.Error())
		return err
	}
	pid, _ := c.proc.Pid()
	m.update(c, func(st *Status) {
		st.Status = StatusRunning
		st.Pid = pid
		st.StartedAt = started
	})
	m.recordCgroupPaths(c)
	go m.copyIO(c, c.io)
	go m.monitor(c)
	return nil
}

// abandon stops a container whose restore never ran or failed: there is no process, so
// the exit path is this one instead of monitor.
func (m *Manager) abandon(c *container, msg string) {
	c.io.closeChildEnds()
	c.closeIO()
	if err := c.log.Close(); err != nil {
		m.log.Warn("close container log", "id", c.id, "err", err)
	}
	close(c.ioDone)
	m.update(c, func(st *Status) {
		st.Status = StatusStopped
		st.ExitCode = 255
		st.FinishedAt = time.Now()
		st.Reason = ReasonError
		st.Message = msg
	})
	close(c.exited)
}
