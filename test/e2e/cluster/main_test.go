// Package cluster_test runs a single-node Kubernetes cluster on berth (hack/cluster.sh up),
// drives it with kubectl the way a user would, and takes it down at the end; `down` failing
// (something left on the node) fails the run.
//
// The components are built by `hack/cluster.sh build` (make cluster-up): without them every
// test is skipped. BERTH_CLUSTER_KUBECONFIG points the tests at a cluster already up instead
// (nothing is started or stopped then).
package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// busybox is served by the cluster's registry under its upstream name (hack/critest/images).
const (
	busybox = "registry.k8s.io/e2e-test-images/busybox:1.29-2"
	httpd   = "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
)

// onHostNode is kubectl run's override that pins a pod to the host's node (nodeName), whose
// berth the tests reach at env.berthSock: on a multi-node cluster the single-node scenarios
// run there.
var onHostNode = `{"apiVersion": "v1", "spec": {"nodeSelector": {"kubernetes.io/hostname": "` + nodeName + `"}}}`

// cluster is what the tests share.
type clusterEnv struct {
	repo, script, kubectl, kubeconfig string
	berthSock                         string
	skip                              string // why every test skips, when it does
}

var env clusterEnv

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	repo, err := filepath.Abs("../../..")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e/cluster:", err)
		return 1
	}
	env.repo = repo
	env.script = filepath.Join(repo, "hack", "cluster.sh")
	env.berthSock = filepath.Join(envOr("CLUSTER_BERTH_STATE", "/run/berth-cluster"), "berth.sock")
	if os.Geteuid() != 0 {
		env.skip = "the cluster runs a kubelet and berth: run as root"
		return m.Run()
	}
	out, err := exec.Command(env.script, "built").Output()
	if err != nil {
		env.skip = "the Kubernetes components are not built: run `hack/cluster.sh build` (or make cluster-up) first"
		return m.Run()
	}
	env.kubectl = filepath.Join(strings.TrimSpace(string(out)), "kubectl")
	if kc := os.Getenv("BERTH_CLUSTER_KUBECONFIG"); kc != "" {
		env.kubeconfig = kc
		return m.Run()
	}
	if env.kubeconfig, err = up(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/cluster: up:", err)
		down()
		return 1
	}
	code := m.Run()
	if err := down(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/cluster: down:", err)
		code = 1
	}
	return code
}

// up runs `hack/cluster.sh up` and returns the kubeconfig its last line names.
func up() (string, error) {
	start := time.Now()
	// BERTH_CLUSTER_NODES: node containers next to the host's node (make cluster-e2e).
	cmd := exec.Command(env.script, "up", "--nodes", envOr("BERTH_CLUSTER_NODES", "1"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("hack/cluster.sh up: %w", err)
	}
	var last string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		last = sc.Text()
	}
	kc, ok := strings.CutPrefix(last, "KUBECONFIG=")
	if !ok {
		return "", fmt.Errorf("hack/cluster.sh up: last line %q is not KUBECONFIG=...", last)
	}
	fmt.Fprintf(os.Stderr, "e2e/cluster: up in %s\n", time.Since(start).Round(time.Second))
	return kc, nil
}

func down() error {
	cmd := exec.Command(env.script, "down")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hack/cluster.sh down: %w", err)
	}
	return nil
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// needCluster skips t when the suite could not start a cluster.
func needCluster(t *testing.T) {
	t.Helper()
	if env.skip != "" {
		t.Skip(env.skip)
	}
}

// kubectl runs kubectl against the cluster with extra environment (KEY=VALUE) and returns
// its stdout; a failure carries stderr.
func kubectlEnv(t *testing.T, extra []string, stdin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.kubectl, args...)
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+env.kubeconfig), extra...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("kubectl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

func kubectl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	return kubectlEnv(t, nil, "", args...)
}

// mustKubectl fails the test when kubectl fails.
func mustKubectl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := kubectl(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// mustKubectlIn runs kubectl with stdin and fails the test when it fails.
func mustKubectlIn(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := kubectlEnv(t, nil, stdin, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// namespace creates a namespace for one test, deleted (without waiting) when it ends.
func namespace(t *testing.T) string {
	t.Helper()
	// A random suffix: a rerun against the same cluster must not meet the previous run's
	// namespace, still being deleted.
	ns := "e2e-" + strings.ToLower(strings.NewReplacer("/", "-", "_", "-").Replace(t.Name()))
	ns = fmt.Sprintf("%.56s-%06x", ns, rand.IntN(1<<24))
	mustKubectl(t, "create", "namespace", ns)
	// The namespace's default ServiceAccount, which pod admission needs, comes from a controller.
	waitFor(t, time.Minute, "ServiceAccount default in "+ns, func() error {
		_, err := kubectl(t, "-n", ns, "get", "serviceaccount", "default")
		return err
	})
	t.Cleanup(func() { _, _ = kubectl(t, "delete", "namespace", ns, "--wait=false") })
	return ns
}

// waitFor polls cond until it returns nil or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after %s: %v", what, timeout, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// runPod starts a busybox-like pod running cmd (sh -c) and waits for it to be Ready.
func runPod(t *testing.T, ns, name, image, cmd string) {
	t.Helper()
	args := []string{"-n", ns, "run", name, "--image=" + image, "--restart=Never", "--overrides=" + onHostNode}
	if cmd != "" {
		args = append(args, "--", "sh", "-c", cmd)
	}
	mustKubectl(t, args...)
	if _, err := kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/"+name, "--timeout=120s"); err != nil {
		desc, _ := kubectl(t, "-n", ns, "describe", "pod", name)
		t.Fatalf("%v\n%s", err, desc)
	}
}

// stopOnTerm is a pod command that exits at SIGTERM: a shell as pid 1 ignores it otherwise,
// and every deletion would wait for the grace period.
const stopOnTerm = `trap "exit 0" TERM; sleep 3600 & wait`
