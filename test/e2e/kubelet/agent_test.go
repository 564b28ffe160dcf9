package kubelet_test

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

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// agent is a berth process with its own root and state directories. The
// startup mirrors test/e2e's, which cannot be imported from a test package.
type agent struct {
	root, state, sock, logPath string
	cmd                        *exec.Cmd
	conn                       *grpc.ClientConn
	rt                         runtimeapi.RuntimeServiceClient
}

// The pod network: berth's default bridge network (no CNI config in its conf
// dir), on a bridge and subnet of its own; the kubelet's podCIDR replaces the subnet.
const (
	podBridge     = "berthke2e0"
	berthSubnet   = "10.247.76.0/24"
	kubeletSubnet = "10.247.77.0/24"
)

// startAgent starts berth with the suite's network config, or the TOML in the
// file $BERTH_E2E_CONFIG instead.
func startAgent() (*agent, error) {
	root, err := os.MkdirTemp("/var/lib", "berth-kubelet-e2e-")
	if err != nil {
		return nil, err
	}
	// The state dir holds unix sockets: keep its path short.
	state, err := os.MkdirTemp("/run", "berth-ke2e-")
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	a := &agent{root: root, state: state, sock: filepath.Join(state, "berth.sock"), logPath: filepath.Join(root, "agent.log")}
	cfg := fmt.Appendf(nil, "[network]\ncni_conf_dir = %q\ndefault_subnet = %q\ndefault_bridge = %q\n",
		filepath.Join(root, "net.d"), berthSubnet, podBridge)
	if p := os.Getenv("BERTH_E2E_CONFIG"); p != "" {
		if cfg, err = os.ReadFile(p); err != nil {
			a.stopAndClean()
			return nil, err
		}
	}
	cfgPath := filepath.Join(root, "config.toml")
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		a.stopAndClean()
		return nil, err
	}
	args := []string{"--config", cfgPath, "--root", root, "--state", state, "--listen", a.sock,
		"--shim-binary", env.shimBin, "--log-level", "debug"}
	if err := a.start(args); err != nil {
		a.stopAndClean()
		return nil, err
	}
	return a, nil
}

// start launches the agent process and waits until it answers Version.
func (a *agent) start(args []string) error {
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	a.cmd = exec.Command(env.berthBin, args...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// Its own process group, so that a ^C to the test does not reach it first.
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := a.cmd.Start(); err != nil {
		return fmt.Errorf("start agent: %w", err)
	}
	conn, err := grpc.NewClient("unix://"+a.sock,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", a.sock)
		}))
	if err != nil {
		return err
	}
	a.conn = conn
	a.rt = runtimeapi.NewRuntimeServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := a.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not answer within 30s: %v\n%s", err, tail(a.logPath, 40))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and waits.
func (a *agent) stop() error {
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

// stopAndClean removes every pod left through the CRI, stops the agent and
// removes its directories, so that the machine is left as it was found.
func (a *agent) stopAndClean() {
	if a.rt != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		if resp, err := a.rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{}); err == nil {
			for _, p := range resp.Items {
				_, _ = a.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id})
				_, _ = a.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id})
			}
		}
		cancel()
	}
	if err := a.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/kubelet:", err)
	}
	saveLog(a.logPath, "berth.log")
	removeAllSafely(a.state)
	removeAllSafely(a.root)
	// The bridge plugin never deletes its bridge.
	if out, err := exec.Command("ip", "link", "del", podBridge).CombinedOutput(); err != nil && !strings.Contains(string(out), "not exist") {
		fmt.Fprintf(os.Stderr, "e2e/kubelet: delete bridge %s: %v: %s\n", podBridge, err, out)
	}
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
