package cluster_test

import (
	"strings"
	"testing"
)

// TestRunAndLogs: `kubectl run` pulls the e2e busybox by its upstream name through the
// node's mirror, and `kubectl logs` returns what it printed.
func TestRunAndLogs(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	runPod(t, ns, "bb", busybox, "echo hello from berth; sleep 3600")
	logs := mustKubectl(t, "-n", ns, "logs", "bb")
	if !strings.Contains(logs, "hello from berth") {
		t.Fatalf("kubectl logs bb = %q, want the pod's line", logs)
	}
	img := mustKubectl(t, "-n", ns, "get", "pod", "bb", "-o", "jsonpath={.status.containerStatuses[0].image}")
	if img != busybox {
		t.Errorf("pod image %q, want %q", img, busybox)
	}
}
