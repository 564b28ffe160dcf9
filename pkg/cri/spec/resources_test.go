package spec

import (
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestResources(t *testing.T) {
	tests := []struct {
		name string
		r    *runtimeapi.LinuxContainerResources
		opts Options
		want *specs.LinuxResources
		err  error
	}{
		{name: "nil", want: &specs.LinuxResources{}},
		{name: "zero values unset", r: &runtimeapi.LinuxContainerResources{}, want: &specs.LinuxResources{}},
		{
			name: "cpu",
			r:    &runtimeapi.LinuxContainerResources{CpuShares: 512, CpuQuota: 50000, CpuPeriod: 100000, CpusetCpus: "0-1", CpusetMems: "0"},
			want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000), Cpus: "0-1", Mems: "0"}},
		},
		{
			name: "unlimited quota kept",
			r:    &runtimeapi.LinuxContainerResources{CpuQuota: -1},
			want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](-1)}},
		},
		{
			name: "memory without swap",
			r:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20)}},
		},
		{
			name: "memory+swap passes through as memsw",
			r:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 128 << 20},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](128 << 20)}},
		},
		{
			name: "no swap: memsw equals memory",
			r:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 64 << 20},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](64 << 20)}},
		},
		{
			name: "unlimited swap",
			r:    &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: -1},
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](-1)}},
		},
		{name: "memsw below memory", r: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 32 << 20}, err: errInvalid},
		{name: "memsw without memory", r: &runtimeapi.LinuxContainerResources{MemorySwapLimitInBytes: 32 << 20}, err: errInvalid},
		{name: "negative memory", r: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: -5}, err: errInvalid},
		{name: "negative shares", r: &runtimeapi.LinuxContainerResources{CpuShares: -2}, err: errInvalid},
		{
			name: "hugepages",
			r:    &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 4 << 20}, {PageSize: "1GB", Limit: 0}}},
			want: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "2MB", Limit: 4 << 20}, {Pagesize: "1GB", Limit: 0}}},
		},
		{
			name: "hugepages dropped without a hugetlb controller",
			r:    &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}},
			opts: Options{NoHugetlb: true},
			want: &specs.LinuxResources{},
		},
		{name: "hugepage without size", r: &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{Limit: 1}}}, err: errInvalid},
		{
			name: "unified dropped on v1",
			r:    &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000000"}},
			want: &specs.LinuxResources{},
		},
		{
			name: "unified on v2",
			r:    &runtimeapi.LinuxContainerResources{Unified: map[string]string{"memory.high": "1000000"}},
			opts: Options{CgroupV2: true},
			want: &specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000"}},
		},
		{
			name: "pids limit",
			opts: Options{PidsLimit: 1024},
			want: &specs.LinuxResources{Pids: &specs.LinuxPids{Limit: ptr[int64](1024)}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Resources(tt.r, tt.opts)
			wantErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %s\nwant %s", dump(got), dump(tt.want))
			}
		})
	}
}

func TestOOMScoreAdj(t *testing.T) {
	tests := []struct {
		name string
		r    *runtimeapi.LinuxContainerResources
		want *int
		err  error
	}{
		{name: "no resources", want: nil},
		{name: "zero is a value", r: &runtimeapi.LinuxContainerResources{}, want: ptr(0)},
		{name: "guaranteed pod", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: -997}, want: ptr(-997)},
		{name: "besteffort", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: 1000}, want: ptr(1000)},
		{name: "out of range", r: &runtimeapi.LinuxContainerResources{OomScoreAdj: 1001}, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := oomScoreAdj(tt.r)
			wantErr(t, err, tt.err)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}
