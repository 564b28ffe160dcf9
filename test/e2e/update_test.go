package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

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
