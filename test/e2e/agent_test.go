package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/test/e2e/agentproc"
)

// agent is a berth process with its own root and state directories; the
// lowercase names are what the tests use, the process lives in agentproc.
type agent struct {
	p                          *agentproc.Agent
	root, state, sock, logPath string
	extraArgs                  []string
	rt                         runtimeapi.RuntimeServiceClient
	img                        runtimeapi.ImageServiceClient
}

type agentOptions struct {
	config string // TOML written to the agent's config file
	bridge string // a pod bridge named in config, deleted at cleanup
}

var agentSeq atomic.Int32

func startAgent(o agentOptions) (*agent, error) {
	opts := agentproc.Options{Bin: env.berthBin, ShimBin: env.shimBin, RootPrefix: "berth-e2e-", StatePrefix: "berth-e2e-", Bridge: o.bridge}
	n := int(agentSeq.Add(1)+int32(os.Getpid()*3)) % 250
	private := !strings.Contains(o.config, "[network]")
	if private {
		// A private pod network: its own bridge and subnet and an empty CNI config
		// dir, so that the test never touches the node's berth0 or /etc/cni/net.d.
		opts.Bridge = fmt.Sprintf("bte2ea%d", n)
	}
	opts.Config = func(root, state string) (string, error) {
		cfg := o.config
		if private {
			confDir := filepath.Join(root, "cni-conf")
			if err := os.MkdirAll(confDir, 0o755); err != nil {
				return "", err
			}
			cfg += fmt.Sprintf("\n[network]\ncni_conf_dir = %q\ndefault_subnet = \"10.224.%d.0/24\"\ndefault_bridge = %q\n", confDir, n, opts.Bridge)
		}
		if !strings.Contains(cfg, "[nri]") {
			// NRI's default socket is node-wide: agents of one test run must not share it.
			cfg += fmt.Sprintf("\n[nri]\nsocket_path = %q\n", filepath.Join(state, "nri.sock"))
		}
		return cfg, nil
	}
	p, err := agentproc.New(opts)
	if err != nil {
		return nil, err
	}
	a := &agent{p: p, root: p.Root, state: p.State, sock: p.Sock, logPath: p.LogPath, extraArgs: p.Args}
	a.rt, a.img = p.RT, p.Img
	return a, nil
}

// start launches the agent again after kill9 or stop.
func (a *agent) start() error {
	err := a.p.Launch()
	a.rt, a.img = a.p.RT, a.p.Img
	return err
}

// kill9 kills the agent with SIGKILL: nothing of its state may be lost.
func (a *agent) kill9() error { return a.p.Kill9() }

// stop sends SIGTERM and waits: the agent must leave containers running.
func (a *agent) stop() error { return a.p.Stop() }

// pid is the agent process's pid.
func (a *agent) pid() int { return a.p.Pid() }

// stopAndClean removes every pod, stops the agent and removes what it made.
func (a *agent) stopAndClean() {
	if err := a.p.Clean(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: clean agent:", err)
	}
}

func (a *agent) logTail() string { return a.p.LogTail(40) }

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
