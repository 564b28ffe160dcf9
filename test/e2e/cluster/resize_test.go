package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// resizePod is Burstable with requests and limits for cpu and memory, both resizable without
// a restart.
var resizePod = `apiVersion: v1
kind: Pod
metadata: {name: rs}
spec:
  nodeSelector: {kubernetes.io/hostname: ` + nodeName + `}
  terminationGracePeriodSeconds: 5
  containers:
  - name: c
    image: ` + busybox + `
    command: [sh, -c, '` + stopOnTerm + `']
    resizePolicy:
    - {resourceName: cpu, restartPolicy: NotRequired}
    - {resourceName: memory, restartPolicy: NotRequired}
    resources:
      requests: {cpu: 100m, memory: 64Mi}
      limits: {cpu: 200m, memory: 128Mi}
`

// cgroupLimits is what a cgroup holds: memory limit, CFS quota (period 100 ms) and cpu shares
// (v1 only; v2 has a converted weight, not checked).
type cgroupLimits struct{ memory, quota, shares int64 }

// TestResizeInPlace: the kubelet's in-place resize (the pod's resize subresource) reaches
// the running container through berth's UpdateContainerResources and the pod cgroup through
// UpdatePodSandboxResources without a restart; a memory limit below what the container uses
// fails with the reason in the pod's conditions and leaves the old limits.
func TestResizeInPlace(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	mustKubectlIn(t, resizePod, "-n", ns, "apply", "-f", "-")
	if _, err := kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/rs", "--timeout=120s"); err != nil {
		desc, _ := kubectl(t, "-n", ns, "describe", "pod", "rs")
		t.Fatalf("%v\n%s", err, desc)
	}
	before := getResizePod(t, ns)
	logResize(t, ns, "before")
	ctr := criContainerCgroup(t, before.containerID())
	pod := path.Dir(ctr)
	if path.Base(pod) != "pod"+before.Metadata.UID {
		t.Fatalf("container cgroup %s is not under the kubelet's pod cgroup pod%s", ctr, before.Metadata.UID)
	}
	checkCgroup(t, "before, container", ctr, cgroupLimits{128 << 20, 20000, 102})
	checkCgroup(t, "before, pod", pod, cgroupLimits{128 << 20, 20000, 102})

	t.Run("grow", func(t *testing.T) {
		mustKubectl(t, "-n", ns, "patch", "pod", "rs", "--subresource", "resize", "--patch",
			`{"spec":{"containers":[{"name":"c","resources":{"requests":{"cpu":"200m","memory":"96Mi"},"limits":{"cpu":"400m","memory":"192Mi"}}}]}}`)
		var after resizePodStatus
		waitFor(t, 2*time.Minute, "the resize to be actuated", func() error {
			after = getResizePod(t, ns)
			if c := after.condition("PodResizePending", "PodResizeInProgress"); c != nil {
				return fmt.Errorf("condition %s: %s %s", c.Type, c.Reason, c.Message)
			}
			if got := after.ctr().Resources.Limits; got["cpu"] != "400m" || got["memory"] != "192Mi" {
				return fmt.Errorf("status limits %v", got)
			}
			return nil
		})
		logResize(t, ns, "after grow")
		c := after.ctr()
		if c.ContainerID != before.containerID() || c.RestartCount != 0 {
			t.Errorf("container %s restarts %d after the resize, want %s and 0", c.ContainerID, c.RestartCount, before.containerID())
		}
		if got := c.Resources.Requests; got["cpu"] != "200m" || got["memory"] != "96Mi" {
			t.Errorf("status requests %v, want cpu 200m memory 96Mi", got)
		}
		if got := c.AllocatedResources; got["cpu"] != "200m" || got["memory"] != "96Mi" {
			t.Errorf("allocatedResources %v, want cpu 200m memory 96Mi", got)
		}
		checkCgroup(t, "after grow, container", ctr, cgroupLimits{192 << 20, 40000, 204})
		checkCgroup(t, "after grow, pod", pod, cgroupLimits{192 << 20, 40000, 204})
		// What the kubelet told berth about the pod as a whole (UpdatePodSandboxResources).
		if got := criPodResources(t, ns); got.MemoryLimitInBytes != strconv.Itoa(192<<20) || got.CPUQuota != "40000" {
			t.Errorf("berth's pod resources %+v, want memory %d quota 40000", got, 192<<20)
		}
	})

	t.Run("shrink below usage", func(t *testing.T) {
		// 48 MiB in the pod's /dev/shm (tmpfs, charged to the container, not reclaimable
		// without swap), then a 32 MiB limit.
		mustKubectl(t, "-n", ns, "exec", "rs", "--", "dd", "if=/dev/zero", "of=/dev/shm/fill", "bs=1M", "count=48")
		if usage := cgroupUsage(t, ctr); usage < 48<<20 {
			t.Fatalf("container memory usage %d after writing 48 MiB to /dev/shm", usage)
		}
		mustKubectl(t, "-n", ns, "patch", "pod", "rs", "--subresource", "resize", "--patch",
			`{"spec":{"containers":[{"name":"c","resources":{"requests":{"memory":"32Mi"},"limits":{"memory":"32Mi"}}}]}}`)
		var after resizePodStatus
		waitFor(t, 2*time.Minute, "the resize to fail", func() error {
			after = getResizePod(t, ns)
			c := after.condition("PodResizeInProgress")
			if c == nil || c.Reason != "Error" {
				return fmt.Errorf("no PodResizeInProgress condition with reason Error: %+v", after.Status.Conditions)
			}
			return nil
		})
		logResize(t, ns, "after refused shrink")
		msg := after.condition("PodResizeInProgress").Message
		t.Logf("PodResizeInProgress: %s", msg)
		if !strings.Contains(msg, "memory") {
			t.Errorf("resize error %q does not say memory", msg)
		}
		c := after.ctr()
		if c.ContainerID != before.containerID() || c.RestartCount != 0 {
			t.Errorf("container %s restarts %d after the refused resize, want %s and 0", c.ContainerID, c.RestartCount, before.containerID())
		}
		if got := c.Resources.Limits["memory"]; got != "192Mi" {
			t.Errorf("status memory limit %s after the refused shrink, want the old 192Mi", got)
		}
		checkCgroup(t, "after refused shrink, container", ctr, cgroupLimits{192 << 20, 40000, 204})
		checkCgroup(t, "after refused shrink, pod", pod, cgroupLimits{192 << 20, 40000, 204})
	})
}

// resizePodStatus is what the test reads of the pod.
type resizePodStatus struct {
	Metadata struct {
		UID string `json:"uid"`
	} `json:"metadata"`
	Status struct {
		Conditions []struct {
			Type, Status, Reason, Message string
		} `json:"conditions"`
		ContainerStatuses []resizeContainerStatus `json:"containerStatuses"`
	} `json:"status"`
}

type resizeContainerStatus struct {
	Name         string `json:"name"`
	ContainerID  string `json:"containerID"`
	RestartCount int    `json:"restartCount"`
	Resources    struct {
		Requests map[string]string `json:"requests"`
		Limits   map[string]string `json:"limits"`
	} `json:"resources"`
	AllocatedResources map[string]string `json:"allocatedResources"`
}

func (p resizePodStatus) ctr() resizeContainerStatus {
	if len(p.Status.ContainerStatuses) != 1 {
		return resizeContainerStatus{}
	}
	return p.Status.ContainerStatuses[0]
}

func (p resizePodStatus) containerID() string { return p.ctr().ContainerID }

// condition returns the first present condition of the given types whose status is True.
func (p resizePodStatus) condition(types ...string) *struct{ Type, Status, Reason, Message string } {
	for i, c := range p.Status.Conditions {
		for _, ty := range types {
			if c.Type == ty && c.Status == "True" {
				return &p.Status.Conditions[i]
			}
		}
	}
	return nil
}

func getResizePod(t *testing.T, ns string) resizePodStatus {
	t.Helper()
	var p resizePodStatus
	if err := json.Unmarshal([]byte(mustKubectl(t, "-n", ns, "get", "pod", "rs", "-o", "json")), &p); err != nil {
		t.Fatalf("decode pod rs: %v", err)
	}
	return p
}

// logResize logs the pod's resize state as kubectl shows it (for the record of a run).
func logResize(t *testing.T, ns, when string) {
	t.Helper()
	out := mustKubectl(t, "-n", ns, "get", "pod", "rs", "-o",
		`jsonpath=spec: {.spec.containers[0].resources}{"\n"}status: {.status.containerStatuses[0].resources}{"\n"}allocated: {.status.containerStatuses[0].allocatedResources}{"\n"}containerID: {.status.containerStatuses[0].containerID} restarts: {.status.containerStatuses[0].restartCount}{"\n"}conditions: {.status.conditions[?(@.type=="PodResizePending")]}{.status.conditions[?(@.type=="PodResizeInProgress")]}`)
	t.Logf("%s:\n%s", when, out)
}

// criContainerCgroup is the cgroup path berth gave the container (its OCI spec's cgroupsPath,
// from the verbose ContainerStatus), for the kubelet's id "<runtime>://<id>".
func criContainerCgroup(t *testing.T, kubeID string) string {
	t.Helper()
	_, id, ok := strings.Cut(kubeID, "://")
	if !ok {
		t.Fatalf("container id %q has no runtime prefix", kubeID)
	}
	rt, closeFn := criClient(t)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := rt.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatalf("ContainerStatus %s: %v", id, err)
	}
	var info struct {
		RuntimeSpec struct {
			Linux struct {
				CgroupsPath string `json:"cgroupsPath"`
			} `json:"linux"`
		} `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || !strings.HasPrefix(info.RuntimeSpec.Linux.CgroupsPath, "/") {
		t.Fatalf("cgroupsPath of %s (cgroupfs driver) from verbose status: %v (%q)", id, err, resp.Info["info"])
	}
	return info.RuntimeSpec.Linux.CgroupsPath
}

// criPodResources is the pod-level resources berth recorded for the namespace's one pod
// (UpdatePodSandboxResources; the verbose PodSandboxStatus). int64s are strings in protojson.
type podResources struct {
	MemoryLimitInBytes string `json:"memoryLimitInBytes"`
	CPUQuota           string `json:"cpuQuota"`
	CPUShares          string `json:"cpuShares"`
}

func criPodResources(t *testing.T, ns string) podResources {
	t.Helper()
	pods := criPods(t, ns)
	if len(pods) != 1 {
		t.Fatalf("berth has %d sandboxes of %s, want 1", len(pods), ns)
	}
	rt, closeFn := criClient(t)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: pods[0].Id, Verbose: true})
	if err != nil {
		t.Fatalf("PodSandboxStatus: %v", err)
	}
	var info struct {
		Status struct {
			Resources *struct {
				Resources podResources `json:"resources"`
			} `json:"resources"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.Status.Resources == nil {
		t.Fatalf("pod resources from verbose status: %v (%q)", err, resp.Info["info"])
	}
	return info.Status.Resources.Resources
}

func cgroupV2() bool {
	_, err := os.Stat("/sys/fs/cgroup/cgroup.controllers")
	return err == nil
}

// cgroupFile reads one file of cgroup cg: in hierarchy v1 on cgroup v1, else in the unified one.
func cgroupFile(t *testing.T, cg, v1, file string) string {
	t.Helper()
	dir := filepath.Join("/sys/fs/cgroup", v1, cg)
	if cgroupV2() {
		dir = filepath.Join("/sys/fs/cgroup", cg)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func cgroupUsage(t *testing.T, cg string) int64 {
	t.Helper()
	file := "memory.usage_in_bytes"
	if cgroupV2() {
		file = "memory.current"
	}
	v, err := strconv.ParseInt(cgroupFile(t, cg, "memory", file), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func checkCgroup(t *testing.T, what, cg string, want cgroupLimits) {
	t.Helper()
	if cgroupV2() {
		if got := cgroupFile(t, cg, "", "memory.max"); got != strconv.FormatInt(want.memory, 10) {
			t.Errorf("%s: memory.max = %s, want %d", what, got, want.memory)
		}
		if got, w := cgroupFile(t, cg, "", "cpu.max"), fmt.Sprintf("%d 100000", want.quota); got != w {
			t.Errorf("%s: cpu.max = %q, want %q", what, got, w)
		}
		return
	}
	for _, f := range []struct {
		v1, file string
		want     int64
	}{
		{"memory", "memory.limit_in_bytes", want.memory},
		{"cpu", "cpu.cfs_quota_us", want.quota},
		{"cpu", "cpu.cfs_period_us", 100000},
		{"cpu", "cpu.shares", want.shares},
	} {
		if got := cgroupFile(t, cg, f.v1, f.file); got != strconv.FormatInt(f.want, 10) {
			t.Errorf("%s: %s = %s, want %d", what, f.file, got, f.want)
		}
	}
}
