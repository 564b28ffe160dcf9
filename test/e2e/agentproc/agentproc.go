// Package agentproc runs berth agents for the end-to-end suites: a process with
// its own root and state directories, a CRI client, restarts, and a cleanup that leaves nothing behind.
package agentproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Options say which binaries to run and how to configure them.
type Options struct {
	Bin, ShimBin string
	// RootPrefix and StatePrefix name the temporary directories under /var/lib and /run.
	RootPrefix, StatePrefix string
	// RootParent holds the root directory instead of /var/lib (hack/chaos: a small
	// filesystem of its own that it can fill).
	RootParent string
	// Config returns the agent's TOML config, given its directories.
	Config func(root, state string) (string, error)
	// Bridge is a pod bridge of the agent's own, deleted at cleanup (the
	// bridge CNI plugin never deletes its bridge).
	Bridge string
}

// Agent is one berth process. RT and Img are replaced on each Launch.
type Agent struct {
	Root, State, Sock, LogPath string
	Args                       []string
	Bridge                     string
	RT                         runtimeapi.RuntimeServiceClient
	Img                        runtimeapi.ImageServiceClient

	bin  string
	cmd  *exec.Cmd
	conn *grpc.ClientConn
}

// New creates the agent's directories and config and launches it.
func New(o Options) (*Agent, error) {
	parent := o.RootParent
	if parent == "" {
		parent = "/var/lib"
	}
	root, err := os.MkdirTemp(parent, o.RootPrefix)
	if err != nil {
		return nil, err
	}
	// The state dir holds unix sockets, whose paths are short: keep it short.
	state, err := os.MkdirTemp("/run", o.StatePrefix)
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	a := &Agent{Root: root, State: state, Sock: filepath.Join(state, "berth.sock"),
		LogPath: filepath.Join(root, "agent.log"), Bridge: o.Bridge, bin: o.Bin}
	cfg, err := o.Config(root, state)
	if err == nil {
		err = os.WriteFile(filepath.Join(root, "config.toml"), []byte(cfg), 0o644)
	}
	if err != nil {
		a.Clean()
		return nil, err
	}
	a.Args = []string{"--config", filepath.Join(root, "config.toml"), "--root", root, "--state", state,
		"--listen", a.Sock, "--shim-binary", o.ShimBin, "--log-level", "debug"}
	if err := a.Launch(); err != nil {
		a.Clean()
		return nil, err
	}
	return a, nil
}

// Launch starts the agent process and waits until it answers Version.
func (a *Agent) Launch() error {
	logf, err := os.OpenFile(a.LogPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	a.cmd = exec.Command(a.bin, a.Args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// Its own process group, so that a signal to the test's group does not
	// reach it and a kill -9 test hits only the agent.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	conn, err := grpc.NewClient("unix://"+a.Sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a.Sock)
		}))
	if err != nil {
		return err
	}
	a.conn, a.RT, a.Img = conn, runtimeapi.NewRuntimeServiceClient(conn), runtimeapi.NewImageServiceClient(conn)
	// Two minutes: in the VM (TCG, binaries read over 9p) a loaded host can take more than
	// 30s from exec to the first answer.
	deadline := time.Now().Add(startTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := a.RT.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not answer within %v: %v\n%s", startTimeout, err, a.LogTail(40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// startTimeout bounds the wait for a started agent's first answer.
const startTimeout = 2 * time.Minute

// Pid is the agent process's pid.
func (a *Agent) Pid() int { return a.cmd.Process.Pid }

// Kill9 kills the agent with SIGKILL: nothing of its state may be lost.
func (a *Agent) Kill9() error {
	if a.conn != nil {
		a.conn.Close()
	}
	if err := a.cmd.Process.Kill(); err != nil {
		return err
	}
	_, _ = a.cmd.Process.Wait()
	return nil
}

// Stop sends SIGTERM and waits: the agent must leave containers running.
func (a *Agent) Stop() error {
	if a.conn != nil {
		a.conn.Close()
	}
	if a.cmd == nil || a.cmd.Process == nil {
		return nil
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- a.cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("agent exited with %v", err)
		}
		return nil
	case <-time.After(20 * time.Second):
		_ = a.cmd.Process.Kill()
		return errors.New("agent ignored SIGTERM for 20s")
	}
}

// Clean removes every pod through the CRI, stops the agent, deletes its
// bridge and removes its directories, so that the machine is left as found.
func (a *Agent) Clean() error {
	if a.RT != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if resp, err := a.RT.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range resp.Items {
				_, _ = a.RT.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
				_, _ = a.RT.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
			}
		}
		cancel()
	}
	err := a.Stop()
	if a.Bridge != "" {
		if l, lerr := netlink.LinkByName(a.Bridge); lerr == nil {
			err = errors.Join(err, netlink.LinkDel(l))
		}
	}
	return errors.Join(err, RemoveAll(a.State), RemoveAll(a.Root))
}

// LogTail returns the last n lines of the agent's log.
func (a *Agent) LogTail(n int) string { return Tail(a.LogPath, n) }

// Tail returns the last n lines of a file.
func Tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RemoveAll detaches any mount left below dir before removing it, so that a
// leaked mount never makes RemoveAll delete files of the mounted filesystem.
func RemoveAll(dir string) error {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return err
	}
	var under []string
	for _, line := range strings.Split(string(mounts), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			under = append(under, f[4])
		}
	}
	// Children after parents in mountinfo: unmount in reverse.
	for i := len(under) - 1; i >= 0; i-- {
		if err := syscall.Unmount(under[i], syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			return fmt.Errorf("unmount leftover %s: %w; keeping %s", under[i], err, dir)
		}
	}
	return os.RemoveAll(dir)
}

// Binary returns the binary named by the environment variable, or builds pkg
// (a path relative to the module root, which is moduleRoot from the caller's
// directory) into out; the Makefile passes prebuilt ones.
func Binary(envVar, pkg, out, moduleRoot string) (string, error) {
	if p := os.Getenv(envVar); p != "" {
		return p, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-tags", "seccomp", "-o", out, pkg)
	cmd.Dir = moduleRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s: %v\n%s", pkg, err, b)
	}
	return out, nil
}

// Undo is a suite's teardown: Run calls the added funcs in reverse order, so
// what was set up last (an agent) goes before what it relies on (its binaries).
type Undo []func()

// Add registers f to run at teardown.
func (u *Undo) Add(f func()) { *u = append(*u, f) }

// Run calls the registered funcs, last added first.
func (u *Undo) Run() {
	for i := len(*u) - 1; i >= 0; i-- {
		(*u)[i]()
	}
}

// Binaries returns the agent and shim under test: $BERTH_BIN and
// $BERTH_SHIM_BIN, else both built from moduleRoot (relative to the caller's
// directory) into a temporary directory that undo removes.
func Binaries(undo *Undo, moduleRoot string) (berth, shim string, err error) {
	tmp, err := os.MkdirTemp("", "berth-e2e-bin-")
	if err != nil {
		return "", "", err
	}
	undo.Add(func() { os.RemoveAll(tmp) })
	if berth, err = Binary("BERTH_BIN", "./cmd/agent", filepath.Join(tmp, "berth"), moduleRoot); err != nil {
		return "", "", err
	}
	if shim, err = Binary("BERTH_SHIM_BIN", "./cmd/shim", filepath.Join(tmp, "berth-shim"), moduleRoot); err != nil {
		return "", "", err
	}
	return berth, shim, nil
}
