package cluster_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"testing"
	"time"
)

// TestDeploymentScale: a Deployment of 3 replicas, scaled to 0, to 20 (logging the time to
// the first and the last pod Ready), and back to 0 with every pod gone from berth too.
func TestDeploymentScale(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	// Created empty and pinned to the host's node before it scales: the 0→20 time is one
	// node's, and berth's pods are checked on that node's socket.
	mustKubectl(t, "-n", ns, "create", "deployment", "d", "--image="+busybox, "--replicas=0", "--",
		"sh", "-c", stopOnTerm)
	mustKubectl(t, "-n", ns, "patch", "deployment", "d", "-p",
		`{"spec": {"template": {"spec": {"nodeSelector": {"kubernetes.io/hostname": "`+nodeName+`"}}}}}`)
	mustKubectl(t, "-n", ns, "scale", "deployment/d", "--replicas=3")
	waitReady(t, ns, 3, 3*time.Minute)
	scaleTo(t, ns, 0)

	start := time.Now()
	mustKubectl(t, "-n", ns, "scale", "deployment/d", "--replicas=20")
	seen := waitReady(t, ns, 20, 10*time.Minute)
	var times []time.Duration
	for _, at := range seen {
		times = append(times, at.Sub(start))
	}
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	t.Logf("0→20: first pod Ready after %s, last after %s (polled every 250ms)",
		times[0].Round(10*time.Millisecond), times[len(times)-1].Round(10*time.Millisecond))

	scaleTo(t, ns, 0)
	waitFor(t, 3*time.Minute, "berth without the namespace's pods", func() error {
		if n := len(criPods(t, ns)); n > 0 {
			return fmt.Errorf("%d pod sandboxes of %s left in berth", n, ns)
		}
		return nil
	})
}

// scaleTo scales deployment d and waits until it has n pods, the deleted ones gone from the API
// (the kubelet confirmed them stopped).
func scaleTo(t *testing.T, ns string, n int) {
	t.Helper()
	mustKubectl(t, "-n", ns, "scale", "deployment/d", fmt.Sprintf("--replicas=%d", n))
	waitFor(t, 5*time.Minute, fmt.Sprintf("deployment d at %d pods", n), func() error {
		if got := podCount(t, ns); got != n {
			return fmt.Errorf("%d pods", got)
		}
		return nil
	})
}

// waitReady polls the namespace's pods until n are Ready and returns when each was first
// seen Ready.
func waitReady(t *testing.T, ns string, n int, timeout time.Duration) map[string]time.Time {
	t.Helper()
	seen := map[string]time.Time{}
	waitFor(t, timeout, fmt.Sprintf("%d pods Ready in %s", n, ns), func() error {
		now := time.Now()
		for name, ready := range podStates(t, ns) {
			if _, ok := seen[name]; ready && !ok {
				seen[name] = now
			}
		}
		if len(seen) < n {
			return fmt.Errorf("%d Ready", len(seen))
		}
		return nil
	})
	return seen
}

func podCount(t *testing.T, ns string) int {
	t.Helper()
	return len(podList(t, ns))
}

// podStates maps each pod of the namespace that is not being deleted to whether it is Ready.
func podStates(t *testing.T, ns string) map[string]bool {
	t.Helper()
	states := map[string]bool{}
	for _, p := range podList(t, ns) {
		if p.Metadata.DeletionTimestamp != nil {
			continue
		}
		ready := false
		for _, c := range p.Status.Conditions {
			if c.Type == "Ready" && c.Status == "True" {
				ready = true
			}
		}
		states[p.Metadata.Name] = ready
	}
	return states
}

type podItem struct {
	Metadata struct {
		Name              string  `json:"name"`
		UID               string  `json:"uid"`
		DeletionTimestamp *string `json:"deletionTimestamp"`
	} `json:"metadata"`
	Status struct {
		Phase      string                          `json:"phase"`
		Conditions []struct{ Type, Status string } `json:"conditions"`
	} `json:"status"`
}

func podList(t *testing.T, ns string) []podItem {
	t.Helper()
	out := mustKubectl(t, "-n", ns, "get", "pods", "-o", "json")
	var list struct {
		Items []podItem `json:"items"`
	}
	if err := json.Unmarshal([]byte(out), &list); err != nil {
		t.Fatalf("decode pods: %v", err)
	}
	return list.Items
}
