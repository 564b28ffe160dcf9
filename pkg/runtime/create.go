package runtime

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	_ "github.com/opencontainers/cgroups/devices" // device rules need the devices manager registered
	"github.com/opencontainers/runc/libcontainer"
	"github.com/opencontainers/runc/libcontainer/configs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// CreateOptions describe a container to create.
type CreateOptions struct {
	ID      string
	Bundle  string // holds config.json and rootfs/
	LogPath string // CRI log file; "" discards output
	Stdin   bool
	// StdinOnce closes the container's stdin when the first attach
	// session's stdin ends (pipes only; a tty is left open).
	StdinOnce bool
	Tty       bool
	// RestoreImages, when set, makes this a container restored from the CRIU images
	// in that directory (restore.go): Start restores instead of exec'ing. RestoreWork
	// receives CRIU's restore log.
	RestoreImages, RestoreWork string
}

// Create sets up the container (namespaces, cgroup, mounts) with its init
// waiting to exec the user process; Start releases it. It returns the host
// pid of the container's init.
func (m *Manager) Create(opts CreateOptions) (int, error) {
	if opts.ID == "" || opts.Bundle == "" {
		return 0, fmt.Errorf("create container: id and bundle are required: %w", errdefs.ErrInvalidArgument)
	}
	m.mu.Lock()
	if _, ok := m.containers[opts.ID]; ok {
		m.mu.Unlock()
		return 0, fmt.Errorf("create container %q: %w", opts.ID, errdefs.ErrAlreadyExists)
	}
	// Reserve the id before the slow part so a concurrent Create fails fast.
	m.containers[opts.ID] = &container{id: opts.ID, exited: make(chan struct{}), ioDone: make(chan struct{}),
		st: Status{ID: opts.ID, Status: StatusUnknown}}
	m.mu.Unlock()

	c, err := m.create(opts)
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		delete(m.containers, opts.ID)
		return 0, err
	}
	m.containers[opts.ID] = c
	return c.st.Pid, nil
}

func (m *Manager) create(opts CreateOptions) (*container, error) {
	if m.oci != nil {
		return m.createOCI(opts)
	}
	spec, err := loadSpec(opts.Bundle)
	if err != nil {
		return nil, err
	}
	// Converting a spec that joins a user namespace spawns and waits for a
	// helper process: keep the orphan reaper from stealing its exit.
	release := m.reaper.hold()
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{
		CgroupName:       opts.ID,
		UseSystemdCgroup: m.opts.SystemdCgroup,
		Spec:             spec,
	})
	release()
	if err != nil {
		return nil, fmt.Errorf("convert spec of %q: %w", opts.ID, errors.Join(err, errdefs.ErrInvalidArgument))
	}
	proc, err := newProcess(spec.Process)
	if err != nil {
		return nil, fmt.Errorf("process of %q: %w", opts.ID, err)
	}
	logFile, err := OpenLogFile(opts.LogPath)
	if err != nil {
		return nil, err
	}
	c := &container{
		id:        opts.ID,
		log:       logFile,
		exited:    make(chan struct{}),
		ioDone:    make(chan struct{}),
		stdinOnce: opts.StdinOnce,
		tty:       opts.Tty,
	}
	// The spec is applied as written: the agent already fitted oom_score_adj and rlimits to
	// what the node allows (decided once at its startup), so a refusal here is an error.
	if opts.RestoreImages != "" {
		rc, err := m.prepareRestore(opts, c, config, proc)
		if err != nil {
			logFile.Close()
		}
		return rc, err
	}
	lc, io, err := m.startInit(opts, config, proc)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	c.lc = lc
	c.proc = proc
	m.recordCgroupPaths(c)
	pid, _ := proc.Pid()
	m.created(c, opts, pid, io)
	return c, nil
}

// created records a container whose init waits for Start and starts copying its output and
// waiting for its exit; both runtimes end their create here.
func (m *Manager) created(c *container, opts CreateOptions, pid int, io *processIO) {
	c.st = Status{
		ID:        opts.ID,
		Status:    StatusCreated,
		Pid:       pid,
		CreatedAt: time.Now(),
		Bundle:    opts.Bundle,
		LogPath:   opts.LogPath,
	}
	if err := m.records.save(c.st); err != nil {
		m.log.Warn("persist container state", "id", opts.ID, "err", err)
	}
	c.stdin = io.stdin
	c.io = io
	go m.copyIO(c, io)
	go m.monitor(c)
}

// startInit creates the libcontainer container and runs its init up to the
// point where it waits for Start. The reaper is held off meanwhile because
// libcontainer waits for its own intermediate children.
func (m *Manager) startInit(opts CreateOptions, config *configs.Config, proc *libcontainer.Process) (*libcontainer.Container, *processIO, error) {
	lc, err := libcontainer.Create(m.opts.Root, opts.ID, config)
	if err != nil {
		if errors.Is(err, libcontainer.ErrExist) {
			return nil, nil, fmt.Errorf("create container %q: stale libcontainer state: %w", opts.ID, errdefs.ErrAlreadyExists)
		}
		return nil, nil, fmt.Errorf("create container %q: %w", opts.ID, err)
	}
	pio, err := setupIO(proc, opts)
	if err != nil {
		_ = lc.Destroy()
		return nil, nil, err
	}
	proc.Init = true
	release := m.reaper.hold()
	err = lc.Start(proc)
	if err == nil {
		pid, _ := proc.Pid()
		m.reaper.own(pid)
	}
	release()
	pio.closeChildEnds()
	if err != nil {
		pio.closeParentEnds()
		_ = lc.Destroy()
		return nil, nil, fmt.Errorf("start init of %q: %w", opts.ID, err)
	}
	if err := pio.receiveConsole(); err != nil {
		_ = lc.Signal(unix.SIGKILL)
		_, _ = proc.Wait()
		_ = lc.Destroy()
		return nil, nil, fmt.Errorf("console of %q: %w", opts.ID, err)
	}
	return lc, pio, nil
}

// loadSpec reads bundle/config.json and makes its paths absolute: specconv
// resolves relative paths against the working directory, which a
// multi-threaded shim must not change.
func loadSpec(bundle string) (*specs.Spec, error) {
	bundle, err := filepath.Abs(bundle)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("read spec of bundle %s: %w", bundle, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("read spec of bundle %s: %w", bundle, err)
	}
	var spec specs.Spec
	if err := json.Unmarshal(data, &spec); err != nil {
		return nil, fmt.Errorf("decode spec of bundle %s: %w", bundle, errors.Join(err, errdefs.ErrInvalidArgument))
	}
	if spec.Root == nil || spec.Process == nil || spec.Linux == nil {
		return nil, fmt.Errorf("spec of bundle %s lacks root, process or linux: %w", bundle, errdefs.ErrInvalidArgument)
	}
	if !filepath.IsAbs(spec.Root.Path) {
		spec.Root.Path = filepath.Join(bundle, spec.Root.Path)
	}
	for i, mnt := range spec.Mounts {
		if mnt.Source != "" && !filepath.IsAbs(mnt.Source) && isBind(mnt) {
			spec.Mounts[i].Source = filepath.Join(bundle, mnt.Source)
		}
	}
	return &spec, nil
}

func isBind(m specs.Mount) bool {
	if m.Type == "bind" {
		return true
	}
	for _, o := range m.Options {
		if o == "bind" || o == "rbind" {
			return true
		}
	}
	return false
}

// newProcess mirrors runc's own conversion of spec.Process.
func newProcess(p *specs.Process) (*libcontainer.Process, error) {
	lp := &libcontainer.Process{
		Args:            p.Args,
		Env:             p.Env,
		UID:             int(p.User.UID),
		GID:             int(p.User.GID),
		Cwd:             p.Cwd,
		Label:           p.SelinuxLabel,
		NoNewPrivileges: &p.NoNewPrivileges,
		AppArmorProfile: p.ApparmorProfile,
		Scheduler:       p.Scheduler,
		IOPriority:      p.IOPriority,
	}
	if p.ConsoleSize != nil {
		lp.ConsoleWidth = uint16(p.ConsoleSize.Width)
		lp.ConsoleHeight = uint16(p.ConsoleSize.Height)
	}
	if p.Capabilities != nil {
		lp.Capabilities = &configs.Capabilities{
			Bounding:    p.Capabilities.Bounding,
			Effective:   p.Capabilities.Effective,
			Inheritable: p.Capabilities.Inheritable,
			Permitted:   p.Capabilities.Permitted,
			Ambient:     p.Capabilities.Ambient,
		}
	}
	for _, g := range p.User.AdditionalGids {
		lp.AdditionalGroups = append(lp.AdditionalGroups, int(g))
	}
	for _, rl := range p.Rlimits {
		t, ok := rlimitTypes[rl.Type]
		if !ok {
			return nil, fmt.Errorf("unknown rlimit %q: %w", rl.Type, errdefs.ErrInvalidArgument)
		}
		lp.Rlimits = append(lp.Rlimits, configs.Rlimit{Type: t, Hard: rl.Hard, Soft: rl.Soft})
	}
	return lp, nil
}

var rlimitTypes = map[string]int{
	"RLIMIT_AS":         unix.RLIMIT_AS,
	"RLIMIT_CORE":       unix.RLIMIT_CORE,
	"RLIMIT_CPU":        unix.RLIMIT_CPU,
	"RLIMIT_DATA":       unix.RLIMIT_DATA,
	"RLIMIT_FSIZE":      unix.RLIMIT_FSIZE,
	"RLIMIT_LOCKS":      unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK":    unix.RLIMIT_MEMLOCK,
	"RLIMIT_MSGQUEUE":   unix.RLIMIT_MSGQUEUE,
	"RLIMIT_NICE":       unix.RLIMIT_NICE,
	"RLIMIT_NOFILE":     unix.RLIMIT_NOFILE,
	"RLIMIT_NPROC":      unix.RLIMIT_NPROC,
	"RLIMIT_RSS":        unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO":     unix.RLIMIT_RTPRIO,
	"RLIMIT_RTTIME":     unix.RLIMIT_RTTIME,
	"RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK":      unix.RLIMIT_STACK,
}

// recordCgroupPaths keeps the container's cgroup paths for its OOM-kill count (exit.go).
func (m *Manager) recordCgroupPaths(c *container) {
	st, err := c.lc.State()
	if err != nil {
		m.log.Warn("read container cgroup paths; OOM kills will not be reported", "id", c.id, "err", err)
		return
	}
	c.cgroupPaths = st.CgroupPaths
}
