package nri

import (
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func baseSpec() *specs.Spec {
	return &specs.Spec{
		Process: &specs.Process{
			Args:    []string{"sh"},
			Env:     []string{"PATH=/bin", "KEEP=1", "DROP=x"},
			Rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 1024}},
		},
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc"},
			{Destination: "/data/sub", Type: "bind", Source: "/x"},
			{Destination: "/etc/hosts", Type: "bind", Source: "/h"},
		},
		Annotations: map[string]string{"keep": "1", "drop": "1"},
		Linux:       &specs.Linux{CgroupsPath: "/pod/ctr"},
	}
}

func ptr[T any](v T) *T { return &v }

func TestAdjust(t *testing.T) {
	tests := []struct {
		name  string
		adj   *api.ContainerAdjustment
		check func(t *testing.T, sp *specs.Spec)
	}{
		{
			name:  "nil adjustment changes nothing",
			check: func(t *testing.T, sp *specs.Spec) { eq(t, sp, baseSpec()) },
		},
		{
			name: "annotations add and remove",
			adj:  &api.ContainerAdjustment{Annotations: map[string]string{"new": "v", api.MarkForRemoval("drop"): ""}},
			check: func(t *testing.T, sp *specs.Spec) {
				eq(t, sp.Annotations, map[string]string{"keep": "1", "new": "v"})
			},
		},
		{
			name: "env replaced in place, removed, appended",
			adj: &api.ContainerAdjustment{Env: []*api.KeyValue{
				{Key: "NEW", Value: "n"}, {Key: "PATH", Value: "/usr/bin"}, {Key: api.MarkForRemoval("DROP")},
			}},
			check: func(t *testing.T, sp *specs.Spec) {
				eq(t, sp.Process.Env, []string{"PATH=/usr/bin", "KEEP=1", "NEW=n"})
			},
		},
		{
			name:  "args replaced",
			adj:   &api.ContainerAdjustment{Args: []string{"sleep", "1"}},
			check: func(t *testing.T, sp *specs.Spec) { eq(t, sp.Process.Args, []string{"sleep", "1"}) },
		},
		{
			name: "mounts replace by destination, parents first, removal",
			adj: &api.ContainerAdjustment{Mounts: []*api.Mount{
				{Destination: "/data", Type: "tmpfs", Source: "tmpfs"},
				{Destination: "/etc/hosts/", Type: "bind", Source: "/other"},
				{Destination: api.MarkForRemoval("/proc")},
			}},
			check: func(t *testing.T, sp *specs.Spec) {
				var got []string
				for _, m := range sp.Mounts {
					got = append(got, m.Destination+"="+m.Source)
				}
				eq(t, got, []string{"/data=tmpfs", "/data/sub=/x", "/etc/hosts/=/other"})
			},
		},
		{
			name: "hooks appended",
			adj:  &api.ContainerAdjustment{Hooks: &api.Hooks{CreateRuntime: []*api.Hook{{Path: "/bin/hook", Args: []string{"hook"}}}}},
			check: func(t *testing.T, sp *specs.Spec) {
				eq(t, sp.Hooks.CreateRuntime, []specs.Hook{{Path: "/bin/hook", Args: []string{"hook"}}})
			},
		},
		{
			name: "rlimits replace the same type",
			adj:  &api.ContainerAdjustment{Rlimits: []*api.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}, {Type: "RLIMIT_NPROC", Hard: 7, Soft: 7}}},
			check: func(t *testing.T, sp *specs.Spec) {
				eq(t, sp.Process.Rlimits, []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 10, Soft: 5}, {Type: "RLIMIT_NPROC", Hard: 7, Soft: 7}})
			},
		},
		{
			name: "devices are created and allowed",
			adj: &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Devices: []*api.LinuxDevice{
				{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229},
			}}},
			check: func(t *testing.T, sp *specs.Spec) {
				if len(sp.Linux.Devices) != 1 || sp.Linux.Devices[0].Path != "/dev/fuse" {
					t.Fatalf("devices = %+v", sp.Linux.Devices)
				}
				d := sp.Linux.Resources.Devices
				if len(d) != 1 || !d[0].Allow || *d[0].Major != 10 || *d[0].Minor != 229 || d[0].Access != "rw" {
					t.Fatalf("device cgroup = %+v", d)
				}
			},
		},
		{
			name: "cgroups path, oom score, sysctl",
			adj: &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{
				CgroupsPath: "/other", OomScoreAdj: api.Int(500), Sysctl: map[string]string{"net.core.somaxconn": "1024"},
			}},
			check: func(t *testing.T, sp *specs.Spec) {
				eq(t, sp.Linux.CgroupsPath, "/other")
				eq(t, sp.Process.OOMScoreAdj, ptr(500))
				eq(t, sp.Linux.Sysctl, map[string]string{"net.core.somaxconn": "1024"})
			},
		},
		{
			name: "resources override only what is set",
			adj: &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Resources: &api.LinuxResources{
				Memory: &api.LinuxMemory{Limit: api.Int64(1 << 20)},
				Cpu:    &api.LinuxCPU{Shares: api.UInt64(512), Cpus: "0"},
				Pids:   &api.LinuxPids{Limit: 100},
			}}},
			check: func(t *testing.T, sp *specs.Spec) {
				r := sp.Linux.Resources
				eq(t, r.Memory.Limit, ptr(int64(1<<20)))
				if r.Memory.Swap != nil || r.CPU.Quota != nil {
					t.Fatalf("unset fields were set: %+v %+v", r.Memory, r.CPU)
				}
				eq(t, r.CPU.Shares, ptr(uint64(512)))
				eq(t, r.CPU.Cpus, "0")
				eq(t, r.Pids.Limit, ptr(int64(100)))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := baseSpec()
			if err := Adjust(sp, tt.adj); err != nil {
				t.Fatal(err)
			}
			tt.check(t, sp)
		})
	}
}

func TestAdjustRefuses(t *testing.T) {
	tests := []struct {
		name string
		adj  *api.ContainerAdjustment
	}{
		{"cdi devices", &api.ContainerAdjustment{CDIDevices: []*api.CDIDevice{{Name: "vendor.com/gpu=0"}}}},
		{"namespaces", &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Namespaces: []*api.LinuxNamespace{{Type: "network", Path: "/x"}}}}},
		{"seccomp", &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{SeccompPolicy: &api.LinuxSeccomp{DefaultAction: "SCMP_ACT_ALLOW"}}}},
		{"blockio class", &api.ContainerAdjustment{Linux: &api.LinuxContainerAdjustment{Resources: &api.LinuxResources{BlockioClass: api.String("slow")}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := baseSpec()
			err := Adjust(sp, tt.adj)
			if !errdefs.IsNotImplemented(err) {
				t.Fatalf("err = %v, want not implemented", err)
			}
			eq(t, sp, baseSpec())
		})
	}
}

func eq(t *testing.T, got, want any) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %#v, want %#v", got, want)
	}
}
