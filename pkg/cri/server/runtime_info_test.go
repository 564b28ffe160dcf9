package server

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/config"
)

func TestVersionStatusRuntimeConfig(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	v, err := e.svc.Version(ctx, &runtimeapi.VersionRequest{})
	if err != nil || v.RuntimeName != "berth" || v.RuntimeApiVersion != "v1" || v.RuntimeVersion != Version {
		t.Fatalf("Version = %v, %v", v, err)
	}
	st, err := e.svc.Status(ctx, &runtimeapi.StatusRequest{Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	conds := map[string]bool{}
	for _, c := range st.Status.Conditions {
		conds[c.Type] = c.Status
	}
	if !conds[runtimeapi.RuntimeReady] || !conds[runtimeapi.NetworkReady] {
		t.Fatalf("conditions = %v", st.Status.Conditions)
	}
	if len(st.RuntimeHandlers) == 0 || st.RuntimeHandlers[0].Name != "" { // the default first; TestStatusListsRuntimeHandlers has the rest
		t.Fatalf("handlers = %v", st.RuntimeHandlers)
	}
	if !st.GetFeatures().GetSupplementalGroupsPolicy() {
		t.Errorf("features = %v, want supplemental_groups_policy", st.GetFeatures())
	}
	rc, err := e.svc.RuntimeConfig(ctx, &runtimeapi.RuntimeConfigRequest{})
	if err != nil || rc.Linux.CgroupDriver != runtimeapi.CgroupDriver_CGROUPFS {
		t.Fatalf("RuntimeConfig = %v, %v", rc, err)
	}
	_, err = e.svc.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{
		RuntimeConfig: &runtimeapi.RuntimeConfig{NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.88.0.0/16"}},
	})
	if err != nil || e.svc.podCIDR.Load().(string) != "10.88.0.0/16" {
		t.Fatalf("UpdateRuntimeConfig = %v, cidr %v", err, e.svc.podCIDR.Load())
	}
}

// The kubelet (1.37) takes its cgroup driver from RuntimeConfig, overriding its own config:
// berth must report the driver it runs with.
func TestRuntimeConfigReportsDriver(t *testing.T) {
	for driver, want := range map[string]runtimeapi.CgroupDriver{
		cgroups.DriverCgroupfs: runtimeapi.CgroupDriver_CGROUPFS,
		cgroups.DriverSystemd:  runtimeapi.CgroupDriver_SYSTEMD,
	} {
		s := &Service{cfg: config.Config{CgroupDriver: driver}}
		rc, err := s.RuntimeConfig(context.Background(), &runtimeapi.RuntimeConfigRequest{})
		if err != nil || rc.GetLinux().GetCgroupDriver() != want {
			t.Errorf("cgroup_driver %q: RuntimeConfig = %v, %v; want %v", driver, rc, err, want)
		}
	}
}
