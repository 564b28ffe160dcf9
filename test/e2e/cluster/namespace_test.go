package cluster_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestNamespaceDeletion: deleting a namespace with running pods leaves nothing of them on
// the node: no sandbox or container in berth, no pod directory or mount in the kubelet's root,
// no pod cgroup.
func TestNamespaceDeletion(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	mustKubectlIn(t, volumePod, "-n", ns, "apply", "-f", "-")
	runPod(t, ns, "bb", busybox, stopOnTerm)
	mustKubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/vol", "--timeout=120s")
	var uids []string
	for _, p := range podList(t, ns) {
		uids = append(uids, p.Metadata.UID)
	}
	if n := len(criPods(t, ns)); n != 2 {
		t.Fatalf("berth has %d sandboxes of %s, want 2", n, ns)
	}
	mustKubectl(t, "delete", "namespace", ns, "--timeout=3m")
	waitFor(t, 2*time.Minute, "nothing of "+ns+" on the node", func() error {
		if n := len(criPods(t, ns)); n > 0 {
			return fmt.Errorf("%d sandboxes in berth", n)
		}
		if n := len(criContainers(t, ns)); n > 0 {
			return fmt.Errorf("%d containers in berth", n)
		}
		for _, uid := range uids {
			if left := nodeTraces(uid); len(left) > 0 {
				return fmt.Errorf("pod %s left %s", uid, strings.Join(left, ", "))
			}
		}
		return nil
	})
}

// nodeTraces lists what of pod uid is on the node: its kubelet directory, mounts naming it,
// cgroups named after it.
func nodeTraces(uid string) []string {
	var left []string
	kubeletRoot := filepath.Join(envOr("CLUSTER_DIR", "/var/lib/berth-cluster"), "kubelet")
	if _, err := os.Stat(filepath.Join(kubeletRoot, "pods", uid)); err == nil {
		left = append(left, "its kubelet pod directory")
	}
	if b, err := os.ReadFile("/proc/self/mountinfo"); err == nil && strings.Contains(string(b), uid) {
		left = append(left, "mounts")
	}
	cg, _ := filepath.Glob("/sys/fs/cgroup/*/berth-cluster/kubepods*/*pod" + uid)
	cg2, _ := filepath.Glob("/sys/fs/cgroup/*/berth-cluster/kubepods*/*/pod" + uid)
	if len(cg)+len(cg2) > 0 {
		left = append(left, fmt.Sprintf("%d cgroups", len(cg)+len(cg2)))
	}
	return left
}

// criClient connects to the cluster's berth.
func criClient(t *testing.T) (runtimeapi.RuntimeServiceClient, func()) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+env.berthSock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("dial %s: %v", env.berthSock, err)
	}
	return runtimeapi.NewRuntimeServiceClient(conn), func() { conn.Close() }
}

const nsLabel = "io.kubernetes.pod.namespace"

// criPods lists berth's sandboxes of namespace ns.
func criPods(t *testing.T, ns string) []*runtimeapi.PodSandbox {
	t.Helper()
	rt, closeFn := criClient(t)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{
		Filter: &runtimeapi.PodSandboxFilter{LabelSelector: map[string]string{nsLabel: ns}},
	})
	if err != nil {
		t.Fatalf("ListPodSandbox: %v", err)
	}
	return resp.Items
}

// criContainers lists berth's containers of namespace ns.
func criContainers(t *testing.T, ns string) []*runtimeapi.Container {
	t.Helper()
	rt, closeFn := criClient(t)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{
		Filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{nsLabel: ns}},
	})
	if err != nil {
		t.Fatalf("ListContainers: %v", err)
	}
	return resp.Containers
}
