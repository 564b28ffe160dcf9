package runtime

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// An external OCI runtime (a runtime handler whose runtime is a binary: crun, runc's CLI) is
// driven through its command line, as containerd-shim-runc-v2 drives runc: create with the
// container's stdio pipes inherited, start, kill, delete, update, exec --detach. The shim is a
// child subreaper, so once create (or exec --detach) returns, the process it left behind is
// the shim's child: the shim waits for it itself, in the same monitor as a libcontainer
// init, and reads the cgroup the spec names for stats and OOM kills. A tty needs a console
// socket path the runtime connects to; it is not offered yet (ErrNotImplemented).
//
// With shimCgroups the runtime is told to leave cgroups alone (--cgroup-manager=disabled, a
// crun flag) and the shim puts the init into the spec's cgroup between create and start, with
// the spec's resources and device rules converted as for libcontainer; exec runs the runtime
// already in that cgroup (OCIExecMain), so that the exec'd process is born there. crun
// refuses a hybrid node whose cgroup v2 hierarchy has controllers, even with its cgroup
// manager disabled: there it runs in a private mount namespace with that hierarchy hidden.
// Its containers' mount namespaces then descend from a private copy of the node's mounts, so
// a mount made on the node later does not propagate into them (mountPropagation
// HostToContainer/Bidirectional).

// ociErrTail bounds how much of the runtime's log an error quotes.
const ociErrTail = 512

// ociRuntime is an external OCI runtime binary with its state root.
type ociRuntime struct {
	binary string
	root   string // --root: the runtime's state, one directory per container
	// shimCgroups: the shim, not the runtime, manages the containers' cgroups.
	shimCgroups bool
	// systemd: the agent's cgroup driver is systemd (spec cgroupsPath "<slice>:<prefix>:<name>").
	systemd bool
	// hideUnified runs the runtime through OCIExecArg (decided once, in New).
	hideUnified bool
	// self is the shim binary, for OCIExecArg.
	self string
}

// command is how one runtime command on container id is run: directly, or through
// OCIExecArg when the runtime must run in cgroups (join: cgroup directories) or must not see
// the cgroup v2 hierarchy.
func (r ociRuntime) command(id string, join []string, cmd ...string) *exec.Cmd {
	args := r.args(id, cmd...)
	if !r.hideUnified && len(join) == 0 {
		return exec.Command(r.binary, args...)
	}
	hide := "-"
	if r.hideUnified {
		hide = ociExecHide
	}
	joinArg := "-"
	if len(join) > 0 {
		joinArg = strings.Join(join, "\n")
	}
	c := exec.Command(r.self, append([]string{OCIExecArg, hide, joinArg, r.binary}, args...)...)
	if r.hideUnified {
		c.SysProcAttr = &syscall.SysProcAttr{Unshareflags: syscall.CLONE_NEWNS}
	}
	return c
}

// ociExecHide asks OCIExecMain to hide the cgroup v2 hierarchy.
const ociExecHide = "hide-unified"

// args is the command line of one runtime command on container id.
func (r ociRuntime) args(id string, cmd ...string) []string {
	a := []string{"--root", r.root, "--log", r.logPath(id)}
	switch {
	case r.shimCgroups:
		a = append(a, CgroupManagerDisabledFlag)
	case r.systemd:
		a = append(a, "--systemd-cgroup")
	}
	return append(append(a, cmd[0]), cmd[1:]...)
}

// CgroupManagerDisabledFlag tells a runtime (crun) to create no cgroup.
const CgroupManagerDisabledFlag = "--cgroup-manager=disabled"

func (r ociRuntime) logPath(id string) string { return filepath.Join(r.root, id+".log") }
func (r ociRuntime) pidPath(id string) string { return filepath.Join(r.root, id+".pid") }

func createArgs(bundle, pidFile, id string) []string {
	return []string{"create", "--bundle", bundle, "--pid-file", pidFile, id}
}

func execArgs(processFile, pidFile, id string) []string {
	return []string{"exec", "--detach", "--process", processFile, "--pid-file", pidFile, id}
}

func killArgs(id string, sig syscall.Signal, all bool) []string {
	a := []string{"kill"}
	if all {
		a = append(a, "--all")
	}
	return append(a, id, strconv.Itoa(int(sig)))
}

// ociContainer is what the shim knows of a container of an external runtime.
type ociContainer struct {
	init *os.Process     // nil for records of a previous shim
	cg   cgroups.Manager // the cgroup the spec names; nil when unknown
}

// runOCI runs one command of the runtime on container id. stdio, when given, becomes the
// command's (create and exec hand it on to the container's process); otherwise its output is
// kept for the error. The reaper is held off for the whole command: the runtime is the
// shim's child, and so is what it leaves behind once it exits, until the caller owns it.
func (m *Manager) runOCI(id string, stdio *childStdio, after func() error, cmd ...string) error {
	return m.runOCIIn(id, nil, stdio, after, cmd...)
}

// runOCIIn is runOCI with the runtime started in the cgroup directories join, so that what
// it starts is born there.
func (m *Manager) runOCIIn(id string, join []string, stdio *childStdio, after func() error, cmd ...string) error {
	cmd0 := m.oci.command(id, join, cmd...)
	var out bytes.Buffer
	if stdio != nil {
		if stdio.in != nil {
			cmd0.Stdin = stdio.in
		}
		cmd0.Stdout, cmd0.Stderr = stdio.out, stdio.err
	} else {
		cmd0.Stdout, cmd0.Stderr = &out, &out
	}
	release := m.reaper.hold()
	defer release()
	if err := cmd0.Run(); err != nil {
		return fmt.Errorf("%s %s %s: %w%s", m.oci.binary, cmd[0], id, err, m.ociLogTail(id, out.Bytes()))
	}
	if after != nil {
		return after()
	}
	return nil
}

// ociLogTail quotes what the runtime said about a failure.
func (m *Manager) ociLogTail(id string, out []byte) string {
	msg := bytes.TrimSpace(out)
	if len(msg) == 0 {
		data, _ := os.ReadFile(m.oci.logPath(id))
		msg = bytes.TrimSpace(data)
	}
	if len(msg) > ociErrTail {
		msg = msg[len(msg)-ociErrTail:]
	}
	if len(msg) == 0 {
		return ""
	}
	return ": " + string(msg)
}

// ownPidFile reads the pid the runtime wrote and makes the reaper leave that process to its
// waiter. It runs with the reaper still held.
func (m *Manager) ownPidFile(path string) (*os.Process, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read pid file: %w", err)
	}
	_ = os.Remove(path)
	pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil || pid <= 0 {
		return nil, fmt.Errorf("pid file %s holds %q", path, data)
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil, fmt.Errorf("find process %d: %w", pid, err)
	}
	m.reaper.own(pid)
	return p, nil
}

// createOCI creates the container with the external runtime; its init waits for start.
func (m *Manager) createOCI(opts CreateOptions) (*container, error) {
	if opts.Tty {
		return nil, fmt.Errorf("create container %q: a tty is not supported with the external OCI runtime %s: %w", opts.ID, m.oci.binary, errdefs.ErrNotImplemented)
	}
	spec, err := loadSpec(opts.Bundle)
	if err != nil {
		return nil, err
	}
	bundle, err := filepath.Abs(opts.Bundle)
	if err != nil {
		return nil, err
	}
	logFile, err := OpenLogFile(opts.LogPath)
	if err != nil {
		return nil, err
	}
	pio := &processIO{}
	stdio, err := setupPipes(pio, opts.Stdin)
	if err != nil {
		logFile.Close()
		return nil, err
	}
	var init *os.Process
	err = m.runOCI(opts.ID, &stdio, func() (err error) {
		init, err = m.ownPidFile(m.oci.pidPath(opts.ID))
		return err
	}, createArgs(bundle, m.oci.pidPath(opts.ID), opts.ID)...)
	pio.closeChildEnds()
	if err != nil {
		pio.closeParentEnds()
		logFile.Close()
		_ = m.runOCI(opts.ID, nil, nil, "delete", "--force", opts.ID)
		return nil, fmt.Errorf("create container %q: %w", opts.ID, err)
	}
	c := &container{
		id:        opts.ID,
		log:       logFile,
		exited:    make(chan struct{}),
		ioDone:    make(chan struct{}),
		stdinOnce: opts.StdinOnce,
		oci:       &ociContainer{init: init},
	}
	if m.oci.shimCgroups {
		c.oci.cg, err = m.joinCgroup(opts.ID, spec, init.Pid)
		if err != nil {
			_ = m.runOCI(opts.ID, nil, nil, "delete", "--force", opts.ID)
			_, _ = init.Wait()
			m.reaper.disown(init.Pid)
			pio.closeParentEnds()
			logFile.Close()
			return nil, fmt.Errorf("create container %q: %w", opts.ID, err)
		}
	} else if cg, err := m.ociCgroup(opts.ID, spec); err == nil {
		c.oci.cg = cg
	} else {
		m.log.Warn("container cgroup; no stats or OOM kills will be reported", "id", opts.ID, "err", err)
	}
	if c.oci.cg != nil {
		c.cgroupPaths = c.oci.cg.GetPaths()
	}
	m.created(c, opts, init.Pid, pio)
	return c, nil
}

// joinCgroup creates the spec's cgroup with its resources and device rules (converted as
// for libcontainer) and moves the created init into it: it has not exec'd the container's
// process yet, so everything that process starts is accounted there.
func (m *Manager) joinCgroup(id string, spec *specs.Spec, pid int) (cgroups.Manager, error) {
	release := m.reaper.hold()
	config, err := specconv.CreateLibcontainerConfig(&specconv.CreateOpts{CgroupName: id, Spec: spec, UseSystemdCgroup: m.opts.SystemdCgroup})
	release()
	if err != nil {
		return nil, fmt.Errorf("convert spec: %w", errors.Join(err, errdefs.ErrInvalidArgument))
	}
	cg, err := manager.New(config.Cgroups)
	if err != nil {
		return nil, fmt.Errorf("cgroup manager: %w", err)
	}
	if err := cg.Apply(pid); err != nil {
		_ = cg.Destroy()
		return nil, fmt.Errorf("join cgroup: %w", err)
	}
	if err := cg.Set(config.Cgroups.Resources); err != nil {
		_ = cg.Destroy()
		return nil, fmt.Errorf("set cgroup resources: %w", err)
	}
	return cg, nil
}

// ociCgroup is the cgroup the runtime put the container in (the spec's, in the agent's
// driver's form), read for stats and OOM kills only.
func (m *Manager) ociCgroup(id string, spec *specs.Spec) (cgroups.Manager, error) {
	if spec.Linux.CgroupsPath == "" {
		return nil, fmt.Errorf("spec names no cgroup: %w", errdefs.ErrInvalidArgument)
	}
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{CgroupName: id,
		Spec: &specs.Spec{Linux: &specs.Linux{CgroupsPath: spec.Linux.CgroupsPath}}, UseSystemdCgroup: m.opts.SystemdCgroup}, nil)
	if err != nil {
		return nil, err
	}
	return manager.New(cg)
}

func (m *Manager) startOCI(c *container) error {
	return m.runOCI(c.id, nil, nil, "start", c.id)
}

// killOCI signals the init, or every process of the container. A container whose init is
// gone has nothing to signal: the runtime's refusal is then no error.
func (m *Manager) killOCI(c *container, sig syscall.Signal, all bool) error {
	if all && m.oci.shimCgroups && c.oci.cg != nil {
		// The runtime finds "all" in a cgroup it was told not to manage: the shim knows it.
		pids, _ := c.oci.cg.GetAllPids()
		for _, pid := range pids {
			if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("signal process %d of %q: %w", pid, c.id, err)
			}
		}
		all = false
	}
	err := m.runOCI(c.id, nil, nil, killArgs(c.id, sig, all)...)
	if err == nil || !m.ociRunning(c) {
		return nil
	}
	return fmt.Errorf("signal container %q: %w", c.id, err)
}

// ociRunning says whether the container's init is alive (not even a zombie).
func (m *Manager) ociRunning(c *container) bool {
	select {
	case <-c.exited:
		return false
	default:
	}
	if c.oci.init == nil {
		return false
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.oci.init.Pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && !bytes.HasPrefix(bytes.TrimSpace(data[i+1:]), []byte("Z"))
}

// destroyOCI removes the runtime's state and the container's cgroup.
func (m *Manager) destroyOCI(c *container) error {
	if err := m.runOCI(c.id, nil, nil, "delete", "--force", c.id); err != nil {
		if _, serr := os.Stat(filepath.Join(m.oci.root, c.id)); !errors.Is(serr, os.ErrNotExist) {
			return fmt.Errorf("delete container %q: %w", c.id, err)
		}
	}
	_ = os.Remove(m.oci.logPath(c.id))
	if m.oci.shimCgroups && c.oci.cg != nil {
		if err := c.oci.cg.Destroy(); err != nil {
			return fmt.Errorf("remove cgroup of container %q: %w", c.id, err)
		}
	}
	return nil
}

// killLeftoversOCI ends what the init left in the container's cgroup, as killLeftovers does
// for libcontainer: pids listed and killed until none is left, so that a fork racing the
// kill is caught on the next round.
func (m *Manager) killLeftoversOCI(c *container) {
	if c.oci.cg == nil {
		return
	}
	deadline := time.Now().Add(leftoverTimeout)
	for {
		pids, err := c.oci.cg.GetAllPids()
		if err != nil || len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			m.log.Warn("processes left in container survive SIGKILL", "id", c.id, "pids", pids)
			return
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (m *Manager) statsOCI(c *container) (*cgroups.Stats, error) {
	if c.oci.cg == nil {
		return nil, fmt.Errorf("stats of %q: no cgroup known: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	return c.oci.cg.GetStats()
}

// updateOCI hands the new resources to `update --resources`, or sets them on the cgroup the
// shim manages (device rules stay as created).
func (m *Manager) updateOCI(c *container, res *specs.LinuxResources) error {
	if m.oci.shimCgroups {
		return m.updateShimCgroup(c, res)
	}
	f, err := os.CreateTemp(m.oci.root, c.id+"-resources-*.json")
	if err != nil {
		return fmt.Errorf("update container %q: %w", c.id, err)
	}
	defer os.Remove(f.Name())
	err = json.NewEncoder(f).Encode(res)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("update container %q: write resources: %w", c.id, err)
	}
	if err := m.runOCI(c.id, nil, nil, "update", "--resources", f.Name(), c.id); err != nil {
		return fmt.Errorf("update container %q: %w", c.id, err)
	}
	return nil
}

// execOCI starts an exec'd process with `exec --detach` and returns it, owned: like the
// init, it is left to the shim when the runtime exits.
func (m *Manager) execOCI(c *container, st Status, opts ExecOptions, pio *processIO, stdio childStdio) (*os.Process, error) {
	spec, err := loadSpec(st.Bundle)
	if err != nil {
		return nil, fmt.Errorf("exec in %q: %w", c.id, err)
	}
	proc := *spec.Process
	proc.Args, proc.Terminal, proc.ConsoleSize = opts.Args, false, nil
	f, err := os.CreateTemp(m.oci.root, c.id+"-process-*.json")
	if err != nil {
		return nil, fmt.Errorf("exec in %q: %w", c.id, err)
	}
	defer os.Remove(f.Name())
	err = json.NewEncoder(f).Encode(proc)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("exec in %q: write process: %w", c.id, err)
	}
	pidFile := f.Name() + ".pid"
	defer os.Remove(pidFile)
	// A runtime that manages no cgroup leaves the exec'd process in its own: it is started
	// in the container's, before the process can run (or fork) outside it.
	var join []string
	if m.oci.shimCgroups && c.oci.cg != nil {
		join = managerDirs(c.oci.cg)
	}
	var p *os.Process
	err = m.runOCIIn(c.id, join, &stdio, func() (err error) {
		p, err = m.ownPidFile(pidFile)
		return err
	}, execArgs(f.Name(), pidFile, c.id)...)
	pio.closeChildEnds()
	if err != nil {
		pio.closeParentEnds()
		if !m.ociRunning(c) {
			return nil, fmt.Errorf("exec in %q: container stopped: %w", c.id, errdefs.ErrFailedPrecondition)
		}
		return nil, fmt.Errorf("exec in %q: %w", c.id, err)
	}
	return p, nil
}

// loadOCIRecord takes over the record of a container a previous shim ran with the external
// runtime. Its init was reparented away from the shim, so its exit can no longer be seen:
// a live one is killed and deleted (the runtime's delete --force), and every container
// reports a lost exit as 255.
func (m *Manager) loadOCIRecord(c *container, st *Status) {
	c.oci = &ociContainer{}
	if st.Status != StatusStopped {
		if err := m.runOCI(st.ID, nil, nil, "delete", "--force", st.ID); err != nil {
			m.log.Warn("delete container left by a previous shim", "id", st.ID, "err", err)
		}
		st.Status = StatusStopped
		st.ExitCode = 255
		st.FinishedAt = time.Now()
		st.Reason = ReasonUnknown
		st.Message = "container killed: its shim restarted and could no longer see its exit"
		if err := m.records.save(*st); err != nil {
			m.log.Warn("persist container state", "id", st.ID, "err", err)
		}
	}
	close(c.exited)
	c.st = *st
}

func (m *Manager) updateShimCgroup(c *container, res *specs.LinuxResources) error {
	if c.oci.cg == nil {
		return fmt.Errorf("update container %q: no cgroup known: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{
		CgroupName: c.id,
		Spec:       &specs.Spec{Linux: &specs.Linux{Resources: res}},
	}, nil)
	if err != nil {
		return fmt.Errorf("convert resources of %q: %w", c.id, err)
	}
	// Device rules are not part of a CRI update: SkipDevices leaves those set at create.
	cg.Resources.SkipDevices = true
	if err := c.oci.cg.Set(cg.Resources); err != nil {
		return fmt.Errorf("update container %q: %w", c.id, err)
	}
	return nil
}

// OCIExecArg makes the shim binary run OCIExecMain.
const OCIExecArg = "oci-exec"

// unifiedMount is where a hybrid node mounts its cgroup v2 hierarchy.
const unifiedMount = "/sys/fs/cgroup/unified"

// hybridWithV2Controllers tells whether the node mounts cgroup v2 beside v1 with controllers
// bound to it (hugetlb where v1 does not mount it): crun refuses to run there at all, even
// with its cgroup manager disabled.
func hybridWithV2Controllers() bool {
	var st unix.Statfs_t
	if err := unix.Statfs(unifiedMount, &st); err != nil || st.Type != unix.CGROUP2_SUPER_MAGIC {
		return false
	}
	data, err := os.ReadFile(filepath.Join(unifiedMount, "cgroup.controllers"))
	return err == nil && len(bytes.TrimSpace(data)) > 0
}

// managerDirs are the existing directories of a cgroup, one per hierarchy.
func managerDirs(cg cgroups.Manager) []string {
	var dirs []string
	for _, d := range cg.GetPaths() {
		if _, err := os.Stat(d); err == nil && !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// OCIExecMain starts the runtime for the shim: os.Args are [self, OCIExecArg, hide, join,
// binary, args...]. It first joins the cgroup directories in join (one a line, "-" for
// none), so that what the runtime starts is born in them. With hide (ociExecHide) it runs in
// a private mount namespace (the shim starts it with CLONE_NEWNS, and Go makes the mounts
// private) and hides the node's cgroup v2 hierarchy under an empty tmpfs; the container's
// mount namespace, copied from this one, is pivoted away from it. The node's mounts are not
// touched.
func OCIExecMain() int {
	if len(os.Args) < 5 {
		fmt.Fprintln(os.Stderr, "oci-exec: usage: oci-exec hide join binary args...")
		return 2
	}
	hide, join, argv := os.Args[2], os.Args[3], os.Args[4:]
	if join != "-" {
		if err := joinOwnCgroup(join); err != nil {
			fmt.Fprintln(os.Stderr, "oci-exec:", err)
			return 1
		}
	}
	if hide == ociExecHide {
		if err := unix.Mount("none", unifiedMount, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "size=4k,mode=0555"); err != nil {
			fmt.Fprintln(os.Stderr, "oci-exec: hide the cgroup v2 hierarchy:", err)
			return 1
		}
	}
	err := unix.Exec(argv[0], argv, os.Environ())
	fmt.Fprintln(os.Stderr, "oci-exec:", err)
	return 1
}
