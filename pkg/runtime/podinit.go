package runtime

import (
	"fmt"
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
	"golang.org/x/sys/unix"
)

// PodInitArg is the argument that makes the shim binary run PodInitMain.
const PodInitArg = "pod-init"

// PodInitOptions describe the pod's shared-PID-namespace init.
type PodInitOptions struct {
	NetNS, IPCNS, UTSNS string // pinned namespaces to join ("" = the shim's)
	CgroupPath          string // relative to every cgroup v1 hierarchy root
}

type podInit struct {
	cmd  *exec.Cmd
	done chan struct{}
}

// StartPodInit starts the pod's init as PID 1 of a new PID namespace, inside
// the pod's net/ipc/uts namespaces and cgroup, and returns its host pid so
// that containers can join /proc/<pid>/ns/pid.
//
// The init is forked from an OS thread that has setns'd into the pod's
// namespaces (a clone child inherits its thread's namespaces), with
// CLONE_NEWPID. It gets no mount namespace of its own: a private copy of the
// host's mounts would pin the pod's mounts and make their unmount fail.
func (m *Manager) StartPodInit(opts PodInitOptions) (int, error) {
	m.mu.Lock()
	if m.podInit != nil {
		pid := m.podInit.cmd.Process.Pid
		m.mu.Unlock()
		return pid, fmt.Errorf("pod init (pid %d): %w", pid, errdefs.ErrAlreadyExists)
	}
	m.mu.Unlock()

	devnull, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, err
	}
	defer devnull.Close()
	cmd := exec.Command(m.opts.InitBinary, PodInitArg)
	cmd.Args[0] = "berth-pod-init"
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, devnull, devnull
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWPID, Setsid: true}
	release := m.reaper.hold()
	err = startInNamespaces(cmd, map[int]string{
		unix.CLONE_NEWNET: opts.NetNS,
		unix.CLONE_NEWIPC: opts.IPCNS,
		unix.CLONE_NEWUTS: opts.UTSNS,
	})
	if err == nil {
		m.reaper.own(cmd.Process.Pid)
	}
	release()
	if err != nil {
		return 0, fmt.Errorf("start pod init: %w", err)
	}
	pi := &podInit{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		m.reaper.disown(cmd.Process.Pid)
		close(pi.done)
	}()
	if opts.CgroupPath != "" {
		if err := joinCgroupV1(opts.CgroupPath, cmd.Process.Pid); err != nil {
			_ = cmd.Process.Kill()
			<-pi.done
			return 0, err
		}
	}
	m.mu.Lock()
	m.podInit = pi
	m.mu.Unlock()
	return cmd.Process.Pid, nil
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

// joinCgroupV1 moves pid into path in every mounted cgroup v1 hierarchy,
// creating missing levels (the agent normally made them already).
func joinCgroupV1(path string, pid int) error {
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
	_ = pi.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-pi.done:
	case <-time.After(2 * time.Second):
		_ = pi.cmd.Process.Kill()
		<-pi.done
	}
}

// PodInitMain is the whole life of the pod init: as PID 1 of the pod's PID
// namespace it reaps orphaned zombies and exits on SIGTERM or SIGINT.
func PodInitMain() int {
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
