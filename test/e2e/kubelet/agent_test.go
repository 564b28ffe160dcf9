package kubelet_test

import (
	"fmt"
	"os"
	"path/filepath"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/test/e2e/agentproc"
)

// agent is the suite's berth process (see agentproc); the lowercase names are
// what the scenarios read.
type agent struct {
	p                          *agentproc.Agent
	root, state, sock, logPath string
	rt                         runtimeapi.RuntimeServiceClient
}

// The pod network: berth's default bridge network (no CNI config in its conf
// dir), on a bridge and subnet of its own; the kubelet's podCIDR replaces the subnet.
const (
	podBridge     = "berthke2e0"
	berthSubnet   = "10.247.76.0/24"
	kubeletSubnet = "10.247.77.0/24"
)

// startAgent starts berth with the suite's cgroup driver and network config, or the TOML in
// the file $BERTH_E2E_CONFIG instead.
func startAgent() (*agent, error) {
	p, err := agentproc.New(agentproc.Options{
		Bin: env.berthBin, ShimBin: env.shimBin, RootPrefix: "berth-kubelet-e2e-", StatePrefix: "berth-ke2e-",
		Bridge: podBridge,
		Config: func(root, state string) (string, error) {
			if p := os.Getenv("BERTH_E2E_CONFIG"); p != "" {
				b, err := os.ReadFile(p)
				return string(b), err
			}
			return fmt.Sprintf("cgroup_driver = %q\n[network]\ncni_conf_dir = %q\ndefault_subnet = %q\ndefault_bridge = %q\n[nri]\nsocket_path = %q\n",
				env.driver, filepath.Join(root, "net.d"), berthSubnet, podBridge, filepath.Join(state, "nri.sock")), nil
		},
	})
	if err != nil {
		return nil, err
	}
	return &agent{p: p, root: p.Root, state: p.State, sock: p.Sock, logPath: p.LogPath, rt: p.RT}, nil
}

// pid is the agent process's pid.
func (a *agent) pid() int { return a.p.Pid() }

// stopAndClean removes every pod left, stops the agent and removes what it made.
func (a *agent) stopAndClean() {
	saveLog(a.logPath, "berth.log")
	if err := a.p.Clean(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/kubelet:", err)
	}
}
