package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
)

// Options configure a Manager.
type Options struct {
	// Root is libcontainer's state root (<state>/runc).
	Root string
	// StateDir holds the per-container exit records (<shim dir>/containers).
	StateDir string
	// InitBinary is re-executed as "pod-init"; default /proc/self/exe.
	InitBinary string
	// PodInitBinary is the small static pod init (cmd/pod-init, berth-pod-init) started for
	// pods without a user namespace; "" = InitBinary as "pod-init". A user-namespaced pod
	// init always runs InitBinary: its C constructor joins the user namespace (podns).
	PodInitBinary string
	// OCIRuntime is the binary of an external OCI runtime (crun, runc's CLI) that runs this
	// pod's containers instead of libcontainer; OCIRoot is its --root. "" = libcontainer.
	OCIRuntime, OCIRoot string
	// OCIShimCgroups makes the shim manage the cgroups of the external runtime's containers
	// (the runtime gets CgroupManagerDisabledFlag).
	OCIShimCgroups bool
	// SystemdCgroup selects runc's systemd cgroup driver: cgroup paths are
	// "<slice>:<prefix>:<name>" and name scopes systemd creates over D-Bus.
	SystemdCgroup bool
	Logger        *slog.Logger
}

// Manager owns the containers of one pod. All methods are safe for
// concurrent use.
type Manager struct {
	opts    Options
	log     *slog.Logger
	records recordStore
	reaper  *reaper
	oci     *ociRuntime // nil: containers run with libcontainer

	execs atomic.Int64 // exec'd processes under supervision

	mu         sync.Mutex
	containers map[string]*container
	podInit    *podInit
}

// container is one libcontainer container plus its IO and exit tracking.
type container struct {
	id   string
	lc   *libcontainer.Container // nil for records of a previous shim
	proc *libcontainer.Process
	// oci is set instead of lc and proc for a container of an external runtime.
	oci *ociContainer
	log *LogFile
	// stdin is kept open by the shim so that a container reading stdin
	// does not see EOF as soon as it starts; attach writes to it.
	stdin     *os.File
	stdinOnce bool
	tty       bool
	attached  attachSet // clients receiving live output
	// closeStdinOnce guards the StdinOnce close against a second client.
	closeStdinOnce sync.Once
	io             *processIO
	ioDone         chan struct{} // closed when stdout/stderr copying ended
	exited         chan struct{} // closed once the exit is recorded
	// cgroupPaths are the container's cgroups (controller -> path), for its OOM-kill count.
	cgroupPaths map[string]string
	// pending is the restore Start will run (restore.go); guarded by mu.
	pending *restorePlan

	mu sync.Mutex
	st Status
}

func (c *container) status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.st
}

// New creates a Manager and loads the records a previous shim left in
// StateDir: stopped containers keep their exit codes, containers that were
// alive become "unknown" (their exit can no longer be observed).
func New(opts Options) (*Manager, error) {
	if opts.Root == "" || opts.StateDir == "" {
		return nil, fmt.Errorf("runtime root and state dir are required: %w", errdefs.ErrInvalidArgument)
	}
	if opts.InitBinary == "" {
		opts.InitBinary = "/proc/self/exe"
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	for _, d := range []string{opts.Root, opts.StateDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	m := &Manager{
		opts:       opts,
		log:        opts.Logger,
		records:    recordStore{dir: opts.StateDir},
		containers: map[string]*container{},
	}
	m.reaper = newReaper(opts.Logger)
	if opts.OCIRuntime != "" {
		if opts.OCIRoot == "" {
			return nil, fmt.Errorf("external runtime %s: a state root is required: %w", opts.OCIRuntime, errdefs.ErrInvalidArgument)
		}
		if err := os.MkdirAll(opts.OCIRoot, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", opts.OCIRoot, err)
		}
		m.oci = &ociRuntime{binary: opts.OCIRuntime, root: opts.OCIRoot, shimCgroups: opts.OCIShimCgroups, systemd: opts.SystemdCgroup,
			hideUnified: opts.OCIShimCgroups && hybridWithV2Controllers(), self: opts.InitBinary}
	}
	if err := m.loadRecords(); err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Manager) loadRecords() error {
	sts, err := m.records.loadAll()
	if err != nil {
		return err
	}
	for _, st := range sts {
		c := &container{id: st.ID, exited: make(chan struct{}), ioDone: make(chan struct{})}
		close(c.ioDone)
		if m.oci != nil {
			m.loadOCIRecord(c, &st)
			m.containers[st.ID] = c
			continue
		}
		if lc, err := libcontainer.Load(m.opts.Root, st.ID); err == nil {
			c.lc = lc
		}
		if st.Status != StatusStopped {
			// The process is not our child any more: its exit code is lost.
			st.Status = StatusUnknown
			if c.lc == nil || lcStopped(c.lc) {
				m.killLeftovers(c)
				st.Status = StatusStopped
				st.ExitCode = 255
				st.Reason = ReasonUnknown
				st.Message = "container exited while its shim was not running"
			}
		}
		if st.Status == StatusStopped {
			close(c.exited)
		}
		c.st = st
		m.containers[st.ID] = c
		if st.Status == StatusUnknown && c.lc != nil {
			go m.watchLost(c)
		}
	}
	return nil
}

// watchLost polls a container inherited from a previous shim until its init
// is gone: it is not our child, so neither its exit code nor a wakeup on
// its death is available. Wait then returns exit code 255, reason Unknown.
func (m *Manager) watchLost(c *container) {
	for !lcStopped(c.lc) {
		time.Sleep(time.Second)
	}
	m.killLeftovers(c)
	m.update(c, func(st *Status) {
		st.Status = StatusStopped
		st.ExitCode = 255
		st.FinishedAt = time.Now()
		st.Reason = ReasonUnknown
		st.Message = "container exited while its shim was not running"
	})
	close(c.exited)
}

func lcStopped(lc *libcontainer.Container) bool {
	s, err := lc.Status()
	return err != nil || s == libcontainer.Stopped
}

// Run reaps orphaned children until ctx is done. The process must be a
// child subreaper (SetSubreaper) for orphans to reach it.
func (m *Manager) Run(ctx context.Context) {
	m.reaper.run(ctx)
}

func (m *Manager) get(id string) (*container, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	c, ok := m.containers[id]
	if !ok {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	return c, nil
}

// State returns the status of one container.
func (m *Manager) State(id string) (Status, error) {
	c, err := m.get(id)
	if err != nil {
		return Status{}, err
	}
	return c.status(), nil
}

// List returns every container's status, sorted by id.
func (m *Manager) List() []Status {
	m.mu.Lock()
	cs := make([]*container, 0, len(m.containers))
	for _, c := range m.containers {
		cs = append(cs, c)
	}
	m.mu.Unlock()
	out := make([]Status, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.status())
	}
	slices.SortFunc(out, func(a, b Status) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out
}

// Wait blocks until the container has exited (or ctx is done) and returns
// its final status.
func (m *Manager) Wait(ctx context.Context, id string) (Status, error) {
	c, err := m.get(id)
	if err != nil {
		return Status{}, err
	}
	select {
	case <-c.exited:
		return c.status(), nil
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
}

// ReopenLog reopens the container's CRI log file after the kubelet rotated it.
func (m *Manager) ReopenLog(id string) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if c.log == nil {
		return nil
	}
	return c.log.Reopen()
}

// Kill sends sig to the container's init, or with all to every process in
// its cgroup. A container that is not running is left alone: there is
// nothing to signal.
func (m *Manager) Kill(id string, sig syscall.Signal, all bool) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	st := c.status()
	if st.Status == StatusStopped {
		return nil
	}
	if c.oci != nil {
		return m.killOCI(c, sig, all)
	}
	if c.lc == nil {
		return nil
	}
	if plan := c.takePending(); plan != nil {
		m.abandon(c, fmt.Sprintf("killed (signal %d) before its restore", sig))
		return nil
	}
	if all {
		pids, err := c.lc.Processes()
		if err != nil && !errors.Is(err, libcontainer.ErrNotRunning) {
			m.log.Warn("list container processes", "id", id, "err", err)
		}
		for _, pid := range pids {
			if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("signal process %d of %q: %w", pid, id, err)
			}
		}
	}
	if err := c.lc.Signal(sig); err != nil {
		if isNotRunning(err) {
			return nil
		}
		return fmt.Errorf("signal container %q: %w", id, err)
	}
	return nil
}

// Delete destroys a container that is not running (its cgroup and
// libcontainer state go away) and forgets it. A created container that never
// started is killed first. A missing container is not an error.
func (m *Manager) Delete(ctx context.Context, id string) error {
	c, err := m.get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	st := c.status()
	switch st.Status {
	case StatusRunning, StatusUnknown:
		return fmt.Errorf("delete container %q: it is running: %w", id, errdefs.ErrFailedPrecondition)
	case StatusCreated:
		if plan := c.takePending(); plan != nil {
			m.abandon(c, "deleted before its restore")
		}
		if c.lc != nil {
			_ = c.lc.Signal(syscall.SIGKILL)
		}
		if c.oci != nil {
			_ = m.killOCI(c, syscall.SIGKILL, false)
		}
		select {
		case <-c.exited:
		case <-ctx.Done():
			return fmt.Errorf("delete container %q: wait for exit: %w", id, ctx.Err())
		}
	}
	if c.lc != nil {
		if err := c.lc.Destroy(); err != nil {
			return fmt.Errorf("destroy container %q: %w", id, err)
		}
	}
	if c.oci != nil {
		if err := m.destroyOCI(c); err != nil {
			return err
		}
	}
	if err := m.records.remove(id); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.containers, id)
	m.mu.Unlock()
	return nil
}

// Empty reports whether no container is known (the shim may exit).
func (m *Manager) Empty() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.containers) == 0
}

// HasRunning reports whether any container still has live processes.
func (m *Manager) HasRunning() bool {
	for _, st := range m.List() {
		if st.Status != StatusStopped {
			return true
		}
	}
	return false
}

// Close deletes the containers that are no longer running (stopped, or
// created and never started) and stops the pod init. It refuses
// (errdefs.ErrFailedPrecondition) while any container still runs, because
// the shim is the only one who can report its exit.
func (m *Manager) Close(ctx context.Context) error {
	for _, st := range m.List() {
		if st.Status == StatusRunning || st.Status == StatusUnknown {
			return fmt.Errorf("container %q is still running: %w", st.ID, errdefs.ErrFailedPrecondition)
		}
	}
	for _, st := range m.List() {
		if err := m.Delete(ctx, st.ID); err != nil {
			return err
		}
	}
	if !m.Empty() {
		return fmt.Errorf("shim still owns containers: %w", errdefs.ErrFailedPrecondition)
	}
	m.StopPodInit()
	return nil
}
