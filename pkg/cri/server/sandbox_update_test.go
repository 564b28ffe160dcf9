package server

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

func podResourcesRequest(id string, cpuShares, memory int64) *runtimeapi.UpdatePodSandboxResourcesRequest {
	return &runtimeapi.UpdatePodSandboxResourcesRequest{
		PodSandboxId: id,
		Resources:    &runtimeapi.LinuxContainerResources{CpuShares: cpuShares, CpuQuota: 50000, CpuPeriod: 100000, MemoryLimitInBytes: memory},
		Overhead:     &runtimeapi.LinuxContainerResources{CpuShares: 10, MemoryLimitInBytes: 1 << 20},
	}
}

// recordedPodResources reads the resources the verbose PodSandboxStatus reports.
func recordedPodResources(t *testing.T, svc *Service, id string) *store.PodResources {
	t.Helper()
	resp, err := svc.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Status store.SandboxStatus `json:"status"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	return info.Status.Resources
}

func TestUpdatePodSandboxResources(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podID := e.runPod(t, podConfig("p"))
	cgroup := "/berth/" + podID

	for _, step := range []struct {
		name          string
		shares, mem   int64
		wantCgroupMem int64
	}{
		{"grow", 2048, 512 << 20, 512<<20 + 1<<20},
		{"shrink", 256, 64 << 20, 64<<20 + 1<<20},
	} {
		req := podResourcesRequest(podID, step.shares, step.mem)
		if _, err := e.svc.UpdatePodSandboxResources(ctx, req); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		got := e.cg.podSet(cgroup)
		if got.GetMemoryLimitInBytes() != step.wantCgroupMem || got.GetCpuShares() != step.shares+10 || got.GetCpuQuota() != 50000 {
			t.Errorf("%s: pod cgroup got %v, want memory %d, shares %d (sum + overhead), quota 50000", step.name, got, step.wantCgroupMem, step.shares+10)
		}
		rec := recordedPodResources(t, e.svc, podID)
		if rec == nil || !proto.Equal(rec.Resources.LinuxContainerResources, req.Resources) || !proto.Equal(rec.Overhead.LinuxContainerResources, req.Overhead) {
			t.Errorf("%s: recorded %+v, want the request's resources and overhead", step.name, rec)
		}
	}

	// The record survives a restart, and a restart finding nothing pending writes nothing.
	e.svc.Close()
	calls := e.cg.setCalls
	svc := e.newService(t)
	if rec := recordedPodResources(t, svc, podID); rec == nil || rec.Resources.GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("after restart recorded %+v, want memory 64Mi", rec)
	}
	if e.cg.setCalls != calls {
		t.Errorf("restart wrote the pod cgroup %d times, want none", e.cg.setCalls-calls)
	}
}

// TestUpdatePodSandboxResourcesRefused: a refused write (memory below usage) fails naming the
// pod, leaves the recorded resources and puts the last applied ones back on the cgroup.
func TestUpdatePodSandboxResourcesRefused(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podID := e.runPod(t, podConfig("p"))
	cgroup := "/berth/" + podID
	if _, err := e.svc.UpdatePodSandboxResources(ctx, podResourcesRequest(podID, 1024, 256<<20)); err != nil {
		t.Fatal(err)
	}
	e.cg.setErr = fmt.Errorf("memory limit 1 is below the current usage 9: %w", errdefs.ErrFailedPrecondition)
	_, err := e.svc.UpdatePodSandboxResources(ctx, podResourcesRequest(podID, 512, 4096))
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), podID) || !strings.Contains(err.Error(), "default/p") {
		t.Fatalf("err = %v, want FailedPrecondition naming the pod", err)
	}
	if got := e.cg.podSet(cgroup).GetMemoryLimitInBytes(); got != 256<<20+1<<20 {
		t.Errorf("pod cgroup memory = %d after a refused update, want the old %d restored", got, 256<<20+1<<20)
	}
	sb, err := e.svc.store.Sandboxes.Get(podID)
	if err != nil {
		t.Fatal(err)
	}
	st := sb.Status()
	if st.ResourcesPending != nil || st.Resources.Resources.GetMemoryLimitInBytes() != 256<<20 {
		t.Errorf("record after refusal: resources %+v pending %+v, want the old ones, nothing pending", st.Resources, st.ResourcesPending)
	}
}

// TestRecoverPendingPodResources: the agent died between marking an update pending and
// recording it; startup writes the recorded resources back and clears the mark.
func TestRecoverPendingPodResources(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podID := e.runPod(t, podConfig("p"))
	if _, err := e.svc.UpdatePodSandboxResources(ctx, podResourcesRequest(podID, 1024, 256<<20)); err != nil {
		t.Fatal(err)
	}
	sb, err := e.svc.store.Sandboxes.Get(podID)
	if err != nil {
		t.Fatal(err)
	}
	half := &store.PodResources{Resources: store.Resources{LinuxContainerResources: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 << 20}}}
	if err := sb.Update(func(st *store.SandboxStatus) error { st.ResourcesPending = half; return nil }); err != nil {
		t.Fatal(err)
	}
	e.cg.set["/berth/"+podID] = &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 8 << 20}
	e.svc.Close()

	svc := e.newService(t)
	if got := e.cg.podSet("/berth/" + podID).GetMemoryLimitInBytes(); got != 256<<20+1<<20 {
		t.Errorf("pod cgroup memory after recovery = %d, want the recorded %d", got, 256<<20+1<<20)
	}
	sb, err = svc.store.Sandboxes.Get(podID)
	if err != nil {
		t.Fatal(err)
	}
	if st := sb.Status(); st.ResourcesPending != nil {
		t.Errorf("pending mark left after recovery: %+v", st.ResourcesPending)
	}
}

func TestUpdatePodSandboxResourcesInvalid(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podID := e.runPod(t, podConfig("p"))
	tests := []struct {
		name  string
		req   *runtimeapi.UpdatePodSandboxResourcesRequest
		check func(error) bool
	}{
		{"unknown pod", podResourcesRequest("nope", 2, 1<<20), errdefs.IsNotFound},
		{"no resources", &runtimeapi.UpdatePodSandboxResourcesRequest{PodSandboxId: podID}, errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.svc.UpdatePodSandboxResources(ctx, tt.req); !tt.check(err) {
				t.Errorf("err = %v", err)
			}
		})
	}
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.UpdatePodSandboxResources(ctx, podResourcesRequest(podID, 2, 1<<20)); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("update of a stopped pod: err = %v, want FailedPrecondition", err)
	}
}

func TestPodCgroupResources(t *testing.T) {
	tests := []struct {
		name     string
		sum, ovh *runtimeapi.LinuxContainerResources
		want     *runtimeapi.LinuxContainerResources
	}{
		{"no overhead", &runtimeapi.LinuxContainerResources{CpuShares: 100, MemoryLimitInBytes: 10}, nil,
			&runtimeapi.LinuxContainerResources{CpuShares: 100, MemoryLimitInBytes: 10}},
		{"unlimited memory stays unlimited", &runtimeapi.LinuxContainerResources{CpuQuota: -1}, &runtimeapi.LinuxContainerResources{CpuQuota: 100, MemoryLimitInBytes: 5},
			&runtimeapi.LinuxContainerResources{CpuQuota: -1}},
		{"adds up", &runtimeapi.LinuxContainerResources{CpuShares: 100, CpuQuota: 1000, CpuPeriod: 100000, MemoryLimitInBytes: 10,
			HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4}}},
			&runtimeapi.LinuxContainerResources{CpuShares: 5, CpuQuota: 500, MemoryLimitInBytes: 3, HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 2}}},
			&runtimeapi.LinuxContainerResources{CpuShares: 105, CpuQuota: 1500, CpuPeriod: 100000, MemoryLimitInBytes: 13,
				HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 6}}}},
		{"quotas over different periods do not add", &runtimeapi.LinuxContainerResources{CpuQuota: 1000, CpuPeriod: 100000},
			&runtimeapi.LinuxContainerResources{CpuQuota: 500, CpuPeriod: 50000},
			&runtimeapi.LinuxContainerResources{CpuQuota: 1000, CpuPeriod: 100000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := podCgroupResources(&store.PodResources{
				Resources: store.Resources{LinuxContainerResources: tt.sum},
				Overhead:  store.Resources{LinuxContainerResources: tt.ovh},
			})
			if !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}
