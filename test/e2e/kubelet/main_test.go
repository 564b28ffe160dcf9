// Package kubelet_test runs the real kubelet in standalone mode (static pods, no API
// server) against a real berth agent, and checks each pod through the kubelet and crictl.
// Both use the systemd cgroup driver where systemd is PID 1 (the VM of hack/vm) and cgroupfs
// elsewhere; $BERTH_E2E_CGROUP_DRIVER chooses.
package kubelet_test

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/test/e2e/agentproc"
	"github.com/berth-runtime/berth/test/fixture"
)

// nodeName is the kubelet's --hostname-override; static pods are named <name>-<nodeName>.
const nodeName = "berth-e2e"

// suite is what every test shares: the registry, the agent and the kubelet.
type suite struct {
	berthBin, shimBin, kubeletBin, crictlBin string
	registry                                 *fixture.Registry
	busybox                                  string // image reference in the registry
	agent                                    *agent
	kubelet                                  *kubelet
	before                                   snapshot // kernel objects present before the suite
	driver                                   string   // cgroup driver of berth and the kubelet: cgroupDriver()
}

var env suite

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e/kubelet: the kubelet and berth run real pods and need root")
		return 1
	}
	cleanup, err := setupSuite()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/kubelet setup:", err)
		cleanup()
		return 1
	}
	code := m.Run()
	if leaks := finalLeakCheck(); len(leaks) > 0 {
		fmt.Fprintf(os.Stderr, "e2e/kubelet: left behind after all tests:\n  %s\n", strings.Join(leaks, "\n  "))
		code = 1
	}
	cleanup()
	return code
}

func setupSuite() (cleanup func(), err error) {
	var undo agentproc.Undo
	cleanup = undo.Run
	if env.kubeletBin, err = lookBinary("KUBELET_BIN", "/usr/local/bin/kubelet"); err != nil {
		return cleanup, fmt.Errorf("%w (build it with hack/kubelet.sh)", err)
	}
	if env.crictlBin, err = lookBinary("CRICTL_BIN", "crictl"); err != nil {
		return cleanup, fmt.Errorf("%w (install it with hack/deps.sh)", err)
	}
	env.driver = cgroupDriver()
	if env.driver != driverCgroupfs && env.driver != driverSystemd {
		return cleanup, fmt.Errorf("cgroup driver %q (from $BERTH_E2E_CGROUP_DRIVER): want %s or %s", env.driver, driverCgroupfs, driverSystemd)
	}
	fmt.Fprintf(os.Stderr, "e2e/kubelet: cgroup driver %s (berth and the kubelet)\n", env.driver)
	env.before = takeSnapshot()
	if env.berthBin, env.shimBin, err = agentproc.Binaries(&undo, "../../.."); err != nil {
		return cleanup, err
	}
	reg, err := fixture.StartRegistry("127.0.0.1:0")
	if err != nil {
		return cleanup, err
	}
	undo.Add(func() { reg.Close() })
	env.registry = reg
	img, err := new(fixture.Builder).Busybox()
	if err != nil {
		return cleanup, fmt.Errorf("build busybox image: %w", err)
	}
	if _, err := reg.Push("berth/busybox:latest", img); err != nil {
		return cleanup, fmt.Errorf("push busybox image: %w", err)
	}
	env.busybox = reg.Ref("berth/busybox:latest")

	a, err := startAgent()
	if err != nil {
		return cleanup, err
	}
	undo.Add(func() { a.stopAndClean() })
	env.agent = a

	k, err := startKubelet(a.sock)
	if err != nil {
		return cleanup, err
	}
	// The kubelet stops before the agent: it must not recreate pods the agent removes.
	undo.Add(func() { k.stopAndClean() })
	env.kubelet = k
	return cleanup, nil
}

// lookBinary returns the binary named by envVar, else def (a path or a $PATH name).
func lookBinary(envVar, def string) (string, error) {
	p := def
	if v := os.Getenv(envVar); v != "" {
		p = v
	}
	found, err := exec.LookPath(p)
	if err != nil {
		return "", fmt.Errorf("find %s (set $%s): %w", p, envVar, err)
	}
	return found, nil
}
