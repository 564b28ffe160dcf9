package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// UpdateContainerResources reaches the running container's cgroup and its status.
func TestUpdateContainerResources(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "update"))
	c := ctrConfig("limited", env.images.busybox, withMemoryLimit(64<<20),
		// v1's file, else (cgroup v2, the container's own cgroup namespace) the unified one.
		withShell("while true; do cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; sleep 0.2; done"))
	id := runContainer(t, a, p, c)
	waitLog(t, logPath(p, c), strconv.Itoa(64<<20), 30*time.Second)

	_, err := a.rt.UpdateContainerResources(ctxT(t), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id,
		Linux:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 96 << 20, CpuShares: 512},
	})
	must(t, err, "update resources")
	waitLog(t, logPath(p, c), strconv.Itoa(96<<20), 30*time.Second)
	st := containerStatus(t, a, id)
	if got := st.Resources.GetLinux(); got.GetMemoryLimitInBytes() != 96<<20 || got.GetCpuShares() != 512 {
		t.Errorf("status resources after update = %v", got)
	}
	if !strings.Contains(logText(readLog(t, logPath(p, c)), "stdout"), strconv.Itoa(96<<20)) {
		t.Error("the container never saw the new limit")
	}
}

// A container memory limit below what the container uses is refused (FailedPrecondition,
// naming the usage) before anything is written; the limit and the reported resources stay.
func TestUpdateContainerResourcesBelowUsage(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "update-below"))
	// 4 MB in the pod's /dev/shm (tmpfs, charged to the container, not reclaimable without
	// swap): the usage stays well above the refused limit below.
	c := ctrConfig("busy", env.images.busybox, withMemoryLimit(64<<20),
		withShell("head -c 4000000 /dev/zero > /dev/shm/fill; echo ready; sleep 3600"))
	id := runContainer(t, a, p, c)
	waitLog(t, logPath(p, c), "ready", 30*time.Second)

	_, err := a.rt.UpdateContainerResources(ctxT(t), &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id,
		Linux:       &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 1 << 20},
	})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "current usage") {
		t.Fatalf("shrink below usage: err = %v, want FailedPrecondition naming the container and its usage", err)
	}
	// The container's own view of its cgroup: v1's file, else (cgroup v2) the unified one.
	out, code := execIn(t, a, id, "sh", "-c", "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max")
	if code != 0 || strings.TrimSpace(out) != strconv.Itoa(64<<20) {
		t.Errorf("memory limit after a refused shrink = %q (exit %d), want the old %d", out, code, 64<<20)
	}
	st := containerStatus(t, a, id)
	if got := st.Resources.GetLinux().GetMemoryLimitInBytes(); got != 64<<20 {
		t.Errorf("status memory limit after a refused shrink = %d, want %d", got, 64<<20)
	}
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container state after a refused shrink = %v, want running", st.State)
	}
}

// The Stream* RPCs return what the List* RPCs return.
func TestStreamListsMatchLists(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "stream"))
	id := createContainer(t, a, p, ctrConfig("idle", env.images.busybox, withCommand("true")))

	ps, err := a.rt.StreamPodSandboxes(ctxT(t), &runtimeapi.StreamPodSandboxesRequest{
		Filter: &runtimeapi.PodSandboxFilter{Id: p.id},
	})
	must(t, err, "stream pods")
	var pods []string
	for {
		resp, err := ps.Recv()
		if err != nil {
			break
		}
		for _, it := range resp.PodSandboxes {
			pods = append(pods, it.Id)
		}
	}
	if len(pods) != 1 || pods[0] != p.id {
		t.Errorf("streamed pods = %v, want [%s]", pods, p.id)
	}

	cs, err := a.rt.StreamContainers(ctxT(t), &runtimeapi.StreamContainersRequest{
		Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id},
	})
	must(t, err, "stream containers")
	var ctrs []string
	for {
		resp, err := cs.Recv()
		if err != nil {
			break
		}
		for _, it := range resp.Containers {
			ctrs = append(ctrs, it.Id)
		}
	}
	if len(ctrs) != 1 || ctrs[0] != id {
		t.Errorf("streamed containers = %v, want [%s]", ctrs, id)
	}

	is, err := a.img.StreamImages(ctxT(t), &runtimeapi.StreamImagesRequest{})
	must(t, err, "stream images")
	var images int
	for {
		resp, err := is.Recv()
		if err != nil {
			break
		}
		images += len(resp.Images)
	}
	list, err := a.img.ListImages(ctxT(t), &runtimeapi.ListImagesRequest{})
	must(t, err, "list images")
	if images != len(list.Images) || images == 0 {
		t.Errorf("streamed %d images, listed %d", images, len(list.Images))
	}
}

// podCgroupFile reads a file of the pod's cgroup (v1: in the controller's hierarchy).
func podCgroupFile(t *testing.T, a *agent, p pod, controller, file string) string {
	t.Helper()
	st, err := a.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	must(t, err, "pod status")
	var info struct {
		Metadata struct {
			CgroupParent string `json:"cgroupParent"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Metadata.CgroupParent == "" {
		t.Fatalf("pod cgroup from verbose status: %v (%q)", err, st.Info["info"])
	}
	dir := filepath.Join("/sys/fs/cgroup", controller, info.Metadata.CgroupParent)
	if fileExists("/sys/fs/cgroup/cgroup.controllers") {
		dir = filepath.Join("/sys/fs/cgroup", info.Metadata.CgroupParent)
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	must(t, err, "read pod cgroup file")
	return strings.TrimSpace(string(b))
}

// UpdatePodSandboxResources grows and shrinks a running pod's cgroup; a memory limit below
// what the pod uses is refused and the old limits stay.
func TestUpdatePodSandboxResources(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "podresize"))
	// Touch a few MiB so the pod's usage is well above the refused limit below.
	c := ctrConfig("busy", env.images.busybox, withShell("x=$(head -c 4000000 /dev/zero | tr '\\0' a); echo ready; sleep 3600"))
	runContainer(t, a, p, c)
	waitLog(t, logPath(p, c), "ready", 30*time.Second)
	v2 := fileExists("/sys/fs/cgroup/cgroup.controllers")

	update := func(shares, quota, memory int64) error {
		_, err := a.rt.UpdatePodSandboxResources(ctxT(t), &runtimeapi.UpdatePodSandboxResourcesRequest{
			PodSandboxId: p.id,
			Resources:    &runtimeapi.LinuxContainerResources{CpuShares: shares, CpuQuota: quota, CpuPeriod: 100000, MemoryLimitInBytes: memory},
		})
		return err
	}
	check := func(step string, shares, quota, memory int64) {
		t.Helper()
		if v2 {
			if got, want := podCgroupFile(t, a, p, "", "cpu.max"), fmt.Sprintf("%d 100000", quota); got != want {
				t.Errorf("%s: cpu.max = %q, want %q", step, got, want)
			}
			if got := podCgroupFile(t, a, p, "", "memory.max"); got != strconv.FormatInt(memory, 10) {
				t.Errorf("%s: memory.max = %q, want %d", step, got, memory)
			}
			return
		}
		if got := podCgroupFile(t, a, p, "cpu", "cpu.shares"); got != strconv.FormatInt(shares, 10) {
			t.Errorf("%s: cpu.shares = %q, want %d", step, got, shares)
		}
		if got := podCgroupFile(t, a, p, "cpu", "cpu.cfs_quota_us"); got != strconv.FormatInt(quota, 10) {
			t.Errorf("%s: cpu.cfs_quota_us = %q, want %d", step, got, quota)
		}
		if got := podCgroupFile(t, a, p, "memory", "memory.limit_in_bytes"); got != strconv.FormatInt(memory, 10) {
			t.Errorf("%s: memory.limit_in_bytes = %q, want %d", step, got, memory)
		}
	}

	must(t, update(2048, 200000, 512<<20), "grow pod resources")
	check("grow", 2048, 200000, 512<<20)
	must(t, update(512, 50000, 128<<20), "shrink pod resources")
	check("shrink", 512, 50000, 128<<20)

	err := update(256, 20000, 64<<10)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), p.id) || !strings.Contains(err.Error(), "current usage") {
		t.Fatalf("shrink below usage: err = %v, want FailedPrecondition naming the pod and its usage", err)
	}
	check("after refused shrink", 512, 50000, 128<<20)
}
