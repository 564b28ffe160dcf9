package e2e

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// agent is a berth process with its own root and state directories.
type agent struct {
	root, state, sock, logPath string
	bridge                     string // a private pod bridge to delete at the end, if any
	extraArgs                  []string
	cmd                        *exec.Cmd
	conn                       *grpc.ClientConn
	rt                         runtimeapi.RuntimeServiceClient
	img                        runtimeapi.ImageServiceClient
}

type agentOptions struct {
	config string // TOML written to the agent's config file
}

func startAgent(o agentOptions) (*agent, error) {
	root, err := os.MkdirTemp("/var/lib", "berth-e2e-")
	if err != nil {
		return nil, err
	}
	// The state dir holds unix sockets: keep its path short.
	state, err := os.MkdirTemp("/run", "berth-e2e-")
	if err != nil {
		os.RemoveAll(root)
		return nil, err
	}
	a := &agent{root: root, state: state, sock: filepath.Join(state, "berth.sock"), logPath: filepath.Join(root, "agent.log")}
	if o.config == "" {
		// A private pod network: its own bridge and subnet and an empty CNI config dir,
		// so that the test never touches the node's berth0 or /etc/cni/net.d.
		n := int(agentSeq.Add(1)+int32(os.Getpid()*3)) % 250
		a.bridge = fmt.Sprintf("bte2ea%d", n)
		confDir := filepath.Join(root, "cni-conf")
		if err := os.MkdirAll(confDir, 0o755); err != nil {
			return nil, err
		}
		o.config = fmt.Sprintf("[network]\ncni_conf_dir = %q\ndefault_subnet = \"10.224.%d.0/24\"\ndefault_bridge = %q\n", confDir, n, a.bridge)
	}
	if !strings.Contains(o.config, "[nri]") {
		// NRI's default socket is node-wide: agents of one test run must not share it.
		o.config += fmt.Sprintf("\n[nri]\nsocket_path = %q\n", filepath.Join(state, "nri.sock"))
	}
	cfgPath := filepath.Join(root, "config.toml")
	if err := os.WriteFile(cfgPath, []byte(o.config), 0o644); err != nil {
		return nil, err
	}
	a.extraArgs = []string{"--config", cfgPath, "--root", root, "--state", state, "--listen", a.sock,
		"--shim-binary", env.shimBin, "--log-level", "debug"}
	if err := a.start(); err != nil {
		a.stopAndClean()
		return nil, err
	}
	return a, nil
}

// start launches the agent process and waits until it answers Version.
func (a *agent) start() error {
	logf, err := os.OpenFile(a.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	a.cmd = exec.Command(env.berthBin, a.extraArgs...)
	a.cmd.Stdout, a.cmd.Stderr = logf, logf
	// Its own process group, so that a signal to the test binary's group does
	// not reach it and kill -9 tests hit only the agent.
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
	a.img = runtimeapi.NewImageServiceClient(conn)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := a.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("agent did not answer within 30s: %v\n%s", err, a.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill9 kills the agent with SIGKILL: nothing of its state may be lost.
func (a *agent) kill9() error {
	if a.conn != nil {
		a.conn.Close()
	}
	if err := a.cmd.Process.Kill(); err != nil {
		return err
	}
	_, _ = a.cmd.Process.Wait()
	return nil
}

// stop sends SIGTERM and waits: the agent must leave containers running.
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

// stopAndClean removes every pod through the CRI, stops the agent and
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
	_ = a.stop()
	if a.bridge != "" {
		if l, err := netlink.LinkByName(a.bridge); err == nil {
			_ = netlink.LinkDel(l)
		}
	}
	os.RemoveAll(a.state)
	os.RemoveAll(a.root)
}

var agentSeq atomic.Int32

func (a *agent) logTail() string {
	b, _ := os.ReadFile(a.logPath)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 40 {
		lines = lines[len(lines)-40:]
	}
	return strings.Join(lines, "\n")
}

// newAgent starts a private agent for one test and cleans it up after.
func newAgent(t *testing.T, o agentOptions) *agent {
	t.Helper()
	a, err := startAgent(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log tail:\n%s", a.logTail())
		}
		a.stopAndClean()
	})
	return a
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
