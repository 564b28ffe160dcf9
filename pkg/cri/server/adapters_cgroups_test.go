package server

import (
	"context"
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// TestHostCgroupsNames: what the ledger records (Path) and what the shim gets (Runtime) name
// the same cgroup under either driver, and only the systemd driver moves shims into scopes.
func TestHostCgroupsNames(t *testing.T) {
	const pod = "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
	sd := &hostCgroups{driver: cgroups.DriverSystemd}
	tests := []struct {
		name string
		got  CgroupRef
		want CgroupRef
	}{
		{"systemd container", sd.ContainerCgroup(pod, "c1"),
			CgroupRef{Path: pod + "/berth-c1.scope", Runtime: "kubepods-burstable-pod1.slice:berth:c1"}},
		{"systemd pod init", sd.PodInitCgroup(pod, "s1"),
			CgroupRef{Path: pod + "/berth-podinit-s1.scope", Runtime: "kubepods-burstable-pod1.slice:berth-podinit:s1"}},
		{"cgroupfs container", (&hostCgroups{driver: cgroups.DriverCgroupfs}).ContainerCgroup("/berth/s1", "c1"),
			CgroupRef{Path: "/berth/s1/c1", Runtime: "/berth/s1/c1"}},
		{"cgroupfs pod init", (&hostCgroups{driver: cgroups.DriverCgroupfs}).PodInitCgroup("/berth/s1", "s1"),
			CgroupRef{Path: "/berth/s1/pod-init", Runtime: "/berth/s1/pod-init"}},
	}
	for _, tt := range tests {
		if tt.got != tt.want {
			t.Errorf("%s: %+v, want %+v", tt.name, tt.got, tt.want)
		}
	}
	if got := sd.ShimCgroup("s1"); got != "/berth.slice/berth-shims.slice/berth-shim-s1.scope" {
		t.Errorf("systemd ShimCgroup = %q", got)
	}
	if got := (&hostCgroups{driver: cgroups.DriverCgroupfs}).ShimCgroup("s1"); got != "" {
		t.Errorf("cgroupfs ShimCgroup = %q, want none", got)
	}
	if got := sd.PodPath("/berth.slice", "s1"); got != "/berth.slice/berth-s1.slice" {
		t.Errorf("systemd PodPath = %q", got)
	}
	// A scope is created with its first process, by the shim: nothing to make beforehand.
	if err := sd.EnsureLeaf(pod + "/berth-podinit-s1.scope"); err != nil {
		t.Errorf("EnsureLeaf(scope) = %v", err)
	}
}

// TestContainerScopeInLedger: under the systemd driver a container's scope is recorded before
// the shim asks systemd for it, and removing the container releases it (stops the unit) even
// when the pod's slice is the kubelet's.
func TestContainerScopeInLedger(t *testing.T) {
	e := newTestEnv(t)
	e.cg.scopes = true
	ctx := context.Background()
	pod := podConfig("p", func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = "/kubepods/pod1" })
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, containerConfig("c"))
	scope := "/kubepods/pod1/berth-" + id + ".scope"
	rs, err := e.svc.store.ResourcesOf(id)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(rs, func(r store.Resource) bool { return r.Kind == store.KindCgroup && r.Path == scope }) {
		t.Fatalf("scope %s not in the ledger: %+v", scope, rs)
	}
	e.cg.mu.Lock()
	e.cg.paths[scope] = true // what the shim's systemd call made
	e.cg.mu.Unlock()
	if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	e.cg.mu.Lock()
	left := e.cg.paths[scope]
	e.cg.mu.Unlock()
	if left {
		t.Fatalf("scope %s not removed with its container", scope)
	}
	if rs, _ := e.svc.store.ResourcesOf(id); len(rs) != 0 {
		t.Fatalf("container resources left: %+v", rs)
	}
}
