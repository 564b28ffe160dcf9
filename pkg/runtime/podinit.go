package runtime

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/runtime/podns"
)

// PodInitArg is the argument that makes the shim binary run PodInitMain.
const PodInitArg = "pod-init"

// PodInitOptions describe the pod's shared-PID-namespace init.
type PodInitOptions struct {
	NetNS, IPCNS, UTSNS string // pinned namespaces to join ("" = the shim's)
	CgroupPath          string // relative to every hierarchy root (v1) or /sys/fs/cgroup (v2); a leaf
	// UserNS is the pod's pinned user namespace ("" = the shim's). The
	// namespaces above must belong to it.
	UserNS string
	// Seccomp is the pod's seccomp filter for the init (nil = none): the pod-level
	// security_context.seccomp of the CRI, as for a pause container.
	Seccomp *specs.LinuxSeccomp
}

type podInit struct {
	pid  int
	done chan struct{} // closed once the init is reaped
}

// signal sends sig unless the init was already reaped (its pid may then be
// someone else's).
func (p *podInit) signal(sig syscall.Signal) {
	select {
	case <-p.done:
	default:
		_ = unix.Kill(p.pid, sig)
	}
}

// StartPodInit starts the pod's init as PID 1 of a new PID namespace, inside
// the pod's net/ipc/uts namespaces and cgroup, and returns its host pid so
// that containers can join /proc/<pid>/ns/pid.
//
// The init is forked from an OS thread that has setns'd into the pod's
// namespaces (a clone child inherits its thread's namespaces), with
// CLONE_NEWPID. It gets no mount namespace of its own: a private copy of the
// host's mounts would pin the pod's mounts and make their unmount fail.
//
// With a user namespace the pid namespace must belong to it (the kernel
// checks the owner when runc mounts proc), and a Go process cannot join a
// user namespace; see startInUserNS.
func (m *Manager) StartPodInit(opts PodInitOptions) (int, error) {
	m.mu.Lock()
	if m.podInit != nil {
		pid := m.podInit.pid
		m.mu.Unlock()
		return pid, fmt.Errorf("pod init (pid %d): %w", pid, errdefs.ErrAlreadyExists)
	}
	m.mu.Unlock()

	start := m.startPodInit
	if opts.UserNS != "" {
		start = m.startInUserNS
	}
	join, startOpts := joinCgroup, opts
	switch {
	case opts.CgroupPath != "" && m.opts.SystemdCgroup:
		// systemd creates a scope together with its first process, and the init cannot ask
		// for it before Go starts: the shim does once the init runs. Should the shim die in
		// between, the init stays in the shim's own scope, which the agent's release stops.
		join, startOpts.CgroupPath = joinScope, ""
	case opts.CgroupPath != "":
		// Made before the fork: the init joins it by itself and creates nothing.
		if err := ensureCgroup(opts.CgroupPath); err != nil {
			return 0, err
		}
	}
	pi, err := start(startOpts)
	if err != nil {
		return 0, fmt.Errorf("start pod init: %w", err)
	}
	if opts.CgroupPath != "" {
		if err := join(opts.CgroupPath, pi.pid); err != nil {
			pi.signal(syscall.SIGKILL)
			<-pi.done
			return 0, err
		}
	}
	m.mu.Lock()
	m.podInit = pi
	m.mu.Unlock()
	return pi.pid, nil
}

// podInitCommand runs the static pod init when there is one (small: no Go runtime per pod),
// else this binary in its pod-init mode.
func (m *Manager) podInitCommand(static bool) (*exec.Cmd, func(), error) {
	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, nil, err
	}
	cmd := exec.Command(m.opts.InitBinary, PodInitArg)
	if static && m.opts.PodInitBinary != "" {
		cmd = exec.Command(m.opts.PodInitBinary)
	}
	cmd.Args[0] = "berth-pod-init"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	return cmd, func() { devnull.Close() }, nil
}

// podInitCgroupEnv names the cgroup directories (one per hierarchy, newline-separated) the pod
// init moves itself into before anything else; cmd/pod-init reads the same variable.
const podInitCgroupEnv = "BERTH_POD_INIT_CGROUP_DIRS"

// startPodInit forks the init straight into a new pid namespace. The init joins its
// cgroup itself (PodInitMain), so that a shim killed between the fork and its own
// joinCgroup cannot leave a pod init outside the pod cgroup, where removing the pod
// would never find it; the shim's join after the fork is then a no-op.
func (m *Manager) startPodInit(opts PodInitOptions) (*podInit, error) {
	// The static init loads no seccomp filter: a pod with one gets the Go init, which does.
	cmd, closeFiles, err := m.podInitCommand(opts.Seccomp == nil)
	if err != nil {
		return nil, err
	}
	defer closeFiles()
	if opts.CgroupPath != "" {
		dirs, err := cgroupDirs(opts.CgroupPath)
		if err != nil {
			return nil, err
		}
		cmd.Env = []string{podInitCgroupEnv + "=" + strings.Join(dirs, "\n")}
	}
	sc, err := newPodInitSeccomp(cmd, opts.Seccomp)
	if err != nil {
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	release := m.reaper.hold()
	err = startInNamespaces(cmd, podNamespaces(opts))
	if err == nil {
		m.reaper.own(cmd.Process.Pid)
	}
	release()
	if err != nil {
		sc.closeWrite()
		_ = sc.await()
		return nil, err
	}
	pi := &podInit{pid: cmd.Process.Pid, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		m.reaper.disown(pi.pid)
		close(pi.done)
	}()
	if err := sc.await(); err != nil {
		pi.signal(syscall.SIGKILL)
		<-pi.done
		return nil, err
	}
	return pi, nil
}

func podNamespaces(opts PodInitOptions) map[int]string {
	return map[int]string{
		unix.CLONE_NEWNET: opts.NetNS,
		unix.CLONE_NEWIPC: opts.IPCNS,
		unix.CLONE_NEWUTS: opts.UTSNS,
	}
}

// podInitReportTimeout bounds the wait for the intermediate process, which
// only joins, forks and exits.
const podInitReportTimeout = 10 * time.Second

// startInUserNS runs the init binary with the pod's user namespace handed to
// package podns's constructor: before Go starts, it joins the pod's cgroup (the
// init is born there; the shim's joinCgroup after the fork is then a no-op), the
// user namespace, unshares the pid namespace, forks the init and exits after reporting the
// init's pid. The init is then an orphan, reparented to this process (a child
// subreaper), which owns and reaps it from then on. net, ipc and uts are
// joined by the forking thread, as without a user namespace.
func (m *Manager) startInUserNS(opts PodInitOptions) (*podInit, error) {
	cmd, closeFiles, err := m.podInitCommand(false)
	if err != nil {
		return nil, err
	}
	defer closeFiles()
	userns, err := os.Open(opts.UserNS)
	if err != nil {
		return nil, fmt.Errorf("open user namespace: %w", err)
	}
	defer userns.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd.ExtraFiles = []*os.File{userns, w} // fds 3 and 4
	cmd.Env = []string{podns.EnvUserNSFD + "=3", podns.EnvReportFD + "=4"}
	if opts.CgroupPath != "" {
		procs, err := cgroupProcsFiles(opts.CgroupPath)
		if err != nil {
			w.Close()
			return nil, err
		}
		cmd.Env = append(cmd.Env, podns.EnvCgroupProcs+"="+strings.Join(procs, ":"))
	}
	sc, err := newPodInitSeccomp(cmd, opts.Seccomp)
	if err != nil {
		w.Close()
		return nil, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}

	release := m.reaper.hold()
	defer release()
	err = startInNamespaces(cmd, podNamespaces(opts))
	w.Close()
	sc.closeWrite()
	if err != nil {
		_ = sc.await()
		return nil, err
	}
	_ = r.SetReadDeadline(time.Now().Add(podInitReportTimeout))
	report, readErr := io.ReadAll(r)
	if readErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	pid, err := parsePodInitReport(string(report))
	if err != nil {
		return nil, errors.Join(err, readErr, waitErr)
	}
	// The init must be our child now, or nobody here could reap it. WNOWAIT
	// leaves an init that already died for the waiter below.
	var info unix.Siginfo
	if err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOHANG|unix.WNOWAIT, nil); err != nil {
		_ = unix.Kill(pid, unix.SIGKILL)
		return nil, fmt.Errorf("pod init %d is not a child of the shim (not a child subreaper?): %w", pid, err)
	}
	m.reaper.own(pid)
	pi := &podInit{pid: pid, done: make(chan struct{})}
	go func() {
		for {
			var ws unix.WaitStatus
			_, err := unix.Wait4(pid, &ws, 0, nil)
			if err != unix.EINTR {
				break
			}
		}
		m.reaper.disown(pid)
		close(pi.done)
	}()
	if err := sc.await(); err != nil {
		pi.signal(syscall.SIGKILL)
		<-pi.done
		return nil, err
	}
	return pi, nil
}

// parsePodInitReport reads package podns's "pid <n>" or "error <text>" line.
func parsePodInitReport(report string) (int, error) {
	line := strings.TrimSpace(report)
	if msg, ok := strings.CutPrefix(line, "error "); ok {
		return 0, fmt.Errorf("enter pod user namespace: %s", msg)
	}
	if n, ok := strings.CutPrefix(line, "pid "); ok {
		pid, err := strconv.Atoi(n)
		if err == nil && pid > 0 {
			return pid, nil
		}
	}
	// An empty report: the init binary does not link package podns.
	return 0, fmt.Errorf("enter pod user namespace: unexpected report %q", line)
}

// startInNamespaces starts cmd from a locked thread that joined the given
// namespaces. The thread is never unlocked, so Go discards it afterwards
// instead of reusing a thread living in foreign namespaces.
func startInNamespaces(cmd *exec.Cmd, namespaces map[int]string) error {
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread()
		for nstype, path := range namespaces {
			if path == "" {
				continue
			}
			if err := setns(path, nstype); err != nil {
				errc <- err
				return
			}
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

func setns(path string, nstype int) error {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Setns(fd, nstype); err != nil {
		return fmt.Errorf("join namespace %s: %w", path, err)
	}
	return nil
}

// joinCgroup moves pid into path in every mounted cgroup v1 hierarchy, or in
// the one v2 hierarchy (the library reports it as a single mount), creating
// missing levels (the agent normally made them already). On v2 path must be
// a leaf with no controllers enabled in it: the kernel refuses processes in
// a cgroup that delegates domain controllers to its children.
func joinCgroup(path string, pid int) error {
	mounts, err := cgroups.GetCgroupMounts(true)
	if err != nil {
		return fmt.Errorf("list cgroup mounts: %w", err)
	}
	for _, mnt := range mounts {
		dir, err := ensureCgroupDir(mnt, path)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0); err != nil {
			return fmt.Errorf("move pod init into %s: %w", dir, err)
		}
	}
	return nil
}

// cgroupProcsFiles lists the cgroup.procs file of path in every hierarchy, for package podns's
// constructor, which joins them before it enters the pod's user namespace (and so before
// the init is forked) as joinOwnCgroup does for an init without one.
func cgroupProcsFiles(path string) ([]string, error) {
	dirs, err := cgroupDirs(path)
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(dirs))
	for _, dir := range dirs {
		f := filepath.Join(dir, "cgroup.procs")
		if strings.Contains(f, ":") {
			return nil, fmt.Errorf("cgroup path %q has a colon: %w", f, errdefs.ErrInvalidArgument)
		}
		files = append(files, f)
	}
	return files, nil
}

// cgroupDirs lists path's directory in every mounted hierarchy (the one v2 hierarchy on v2).
func cgroupDirs(path string) ([]string, error) {
	mounts, err := cgroups.GetCgroupMounts(true)
	if err != nil {
		return nil, fmt.Errorf("list cgroup mounts: %w", err)
	}
	dirs := make([]string, 0, len(mounts))
	for _, mnt := range mounts {
		dirs = append(dirs, filepath.Join(mnt.Mountpoint, filepath.Clean("/"+path)))
	}
	return dirs, nil
}

// joinOwnCgroup moves the calling process into each of dirs (newline-separated). It creates
// nothing: a cgroup the agent already removed (its pod rolled back) ends the init instead of
// being made again with nobody to remove it.
func joinOwnCgroup(dirs string) error {
	for _, dir := range strings.Split(dirs, "\n") {
		if dir == "" {
			continue
		}
		if err := os.WriteFile(filepath.Join(dir, "cgroup.procs"), []byte("0"), 0); err != nil {
			return fmt.Errorf("join cgroup %s: %w", dir, err)
		}
	}
	return nil
}

// ensureCgroup creates path in every hierarchy joinCgroup moves the init into.
func ensureCgroup(path string) error {
	mounts, err := cgroups.GetCgroupMounts(true)
	if err != nil {
		return fmt.Errorf("list cgroup mounts: %w", err)
	}
	for _, mnt := range mounts {
		if _, err := ensureCgroupDir(mnt, path); err != nil {
			return err
		}
	}
	return nil
}

// ensureCgroupDir creates path level by level; a new cpuset level starts
// with no cpus or mems (joining it fails with ENOSPC), so it inherits its
// parent's.
func ensureCgroupDir(mnt cgroups.Mount, path string) (string, error) {
	dir := mnt.Mountpoint
	isCpuset := slices.Contains(mnt.Subsystems, "cpuset")
	for _, part := range strings.Split(filepath.Clean("/"+path), "/") {
		if part == "" {
			continue
		}
		parent := dir
		dir = filepath.Join(dir, part)
		if err := os.Mkdir(dir, 0o755); err != nil {
			if os.IsExist(err) {
				continue
			}
			return "", fmt.Errorf("create cgroup %s: %w", dir, err)
		}
		if !isCpuset {
			continue
		}
		for _, f := range []string{"cpuset.cpus", "cpuset.mems"} {
			v, err := os.ReadFile(filepath.Join(parent, f))
			if err != nil {
				return "", fmt.Errorf("read %s of %s: %w", f, parent, err)
			}
			if err := os.WriteFile(filepath.Join(dir, f), v, 0); err != nil {
				return "", fmt.Errorf("init %s of %s: %w", f, dir, err)
			}
		}
	}
	return dir, nil
}

// StopPodInit terminates the pod init, if any.
func (m *Manager) StopPodInit() {
	m.mu.Lock()
	pi := m.podInit
	m.podInit = nil
	m.mu.Unlock()
	if pi == nil {
		return
	}
	pi.signal(syscall.SIGTERM)
	select {
	case <-pi.done:
	case <-time.After(2 * time.Second):
		pi.signal(syscall.SIGKILL)
		<-pi.done
	}
}

// PodInitMain is the whole life of the pod init: as PID 1 of the pod's PID
// namespace it reaps orphaned zombies and exits on SIGTERM or SIGINT.
func PodInitMain() int {
	if path := os.Getenv(podInitCgroupEnv); path != "" {
		if err := joinOwnCgroup(path); err != nil {
			fmt.Fprintln(os.Stderr, "berth-pod-init:", err)
			return 1
		}
	}
	if filter := os.Getenv(podInitSeccompEnv); filter != "" {
		err := applyPodInitSeccomp(filter)
		fmt.Fprintln(os.Stderr, "berth-pod-init:", err)
		return 1
	}
	reportPodInitReady()
	sigc := make(chan os.Signal, 8)
	signal.Notify(sigc, unix.SIGCHLD, unix.SIGTERM, unix.SIGINT)
	for sig := range sigc {
		if sig == unix.SIGTERM || sig == unix.SIGINT {
			return 0
		}
		for {
			var ws unix.WaitStatus
			pid, err := unix.Wait4(-1, &ws, unix.WNOHANG, nil)
			if pid <= 0 || err != nil {
				break
			}
		}
	}
	return 0
}
