package cluster_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestNodeReady: every node (the host's, and the node containers of a multi-node cluster)
// registered over TLS, is Ready, has a pod CIDR, and reports berth and the version the host's
// berth gives over CRI (the nodes run the same binary).
func TestNodeReady(t *testing.T) {
	needCluster(t)
	out := mustKubectl(t, "get", "nodes", "-o", "json")
	var list struct {
		Items []struct {
			Metadata struct{ Name string } `json:"metadata"`
			Spec     struct {
				PodCIDR string `json:"podCIDR"`
			} `json:"spec"`
			Status struct {
				Conditions []struct{ Type, Status string } `json:"conditions"`
				NodeInfo   struct {
					ContainerRuntimeVersion string `json:"containerRuntimeVersion"`
					KubeletVersion          string `json:"kubeletVersion"`
				} `json:"nodeInfo"`
			} `json:"status"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode nodes: %v", err)
	}
	// The kubelet parses the version as semver and prints it without the leading v; one it
	// cannot parse shows as "Unknown".
	want := "berth://" + strings.TrimPrefix(criVersion(t), "v")
	host := false
	for _, n := range list.Items {
		host = host || n.Metadata.Name == nodeName
		ready := ""
		for _, c := range n.Status.Conditions {
			if c.Type == "Ready" {
				ready = c.Status
			}
		}
		if ready != "True" {
			t.Errorf("node %s Ready=%q, want True", n.Metadata.Name, ready)
		}
		if n.Spec.PodCIDR == "" {
			t.Errorf("node %s has no pod CIDR (controller-manager --allocate-node-cidrs)", n.Metadata.Name)
		}
		if got := n.Status.NodeInfo.ContainerRuntimeVersion; got != want {
			t.Errorf("node %s: containerRuntimeVersion = %q, want %q", n.Metadata.Name, got, want)
		}
		t.Logf("node %s Ready, podCIDR %s, kubelet %s, runtime %s", n.Metadata.Name, n.Spec.PodCIDR,
			n.Status.NodeInfo.KubeletVersion, n.Status.NodeInfo.ContainerRuntimeVersion)
	}
	if !host {
		t.Errorf("no node %s among %d", nodeName, len(list.Items))
	}
}

// criVersion asks the cluster's berth for its version directly.
func criVersion(t *testing.T) string {
	t.Helper()
	rt, closeFn := criClient(t)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	v, err := rt.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatalf("CRI Version: %v", err)
	}
	return v.RuntimeVersion
}
