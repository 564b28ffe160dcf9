package cgroups

import (
	"errors"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func ptr[T any](v T) *T { return &v }

func TestToResources(t *testing.T) {
	tests := []struct {
		name    string
		in      Resources
		mode    Mode
		want    *specs.LinuxResources
		wantErr error
	}{
		{name: "nothing set", in: Resources{}, mode: Legacy, want: &specs.LinuxResources{}},
		{
			name: "cpu",
			in:   Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, CPUSetCPUs: "0-1", CPUSetMems: "0"},
			mode: Hybrid,
			want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Shares: ptr[uint64](512), Quota: ptr[int64](50000), Period: ptr[uint64](100000), Cpus: "0-1", Mems: "0"}},
		},
		{name: "zero shares is unset", in: Resources{CPUShares: 0, CPUQuota: 20000}, mode: Legacy, want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](20000)}}},
		{name: "unlimited quota", in: Resources{CPUQuota: -1}, mode: Legacy, want: &specs.LinuxResources{CPU: &specs.LinuxCPU{Quota: ptr[int64](-1)}}},
		{name: "memory only", in: Resources{MemoryLimitBytes: 64 << 20}, mode: Legacy, want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20)}}},
		{
			name: "memory+swap keeps the total",
			in:   Resources{MemoryLimitBytes: 64 << 20, MemorySwapLimitBytes: 128 << 20},
			mode: Legacy,
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](128 << 20)}},
		},
		{
			name: "swap equal to memory disables swap",
			in:   Resources{MemoryLimitBytes: 64 << 20, MemorySwapLimitBytes: 64 << 20},
			mode: Unified,
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](64 << 20)}},
		},
		{
			name: "unlimited swap",
			in:   Resources{MemoryLimitBytes: 64 << 20, MemorySwapLimitBytes: -1},
			mode: Legacy,
			want: &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: ptr[int64](64 << 20), Swap: ptr[int64](-1)}},
		},
		{
			name: "hugepages sorted by size",
			in:   Resources{HugepageLimits: map[string]uint64{"2MB": 4 << 20, "1GB": 1 << 30}},
			mode: Legacy,
			want: &specs.LinuxResources{HugepageLimits: []specs.LinuxHugepageLimit{{Pagesize: "1GB", Limit: 1 << 30}, {Pagesize: "2MB", Limit: 4 << 20}}},
		},
		{
			name: "unified on v2",
			in:   Resources{Unified: map[string]string{"memory.high": "1000000"}},
			mode: Unified,
			want: &specs.LinuxResources{Unified: map[string]string{"memory.high": "1000000"}},
		},
		{name: "empty unified on v1 is fine", in: Resources{Unified: map[string]string{}}, mode: Legacy, want: &specs.LinuxResources{}},
		{name: "unified on hybrid refused", in: Resources{Unified: map[string]string{"memory.high": "1"}}, mode: Hybrid, wantErr: errdefs.ErrInvalidArgument},
		{name: "unified on legacy refused", in: Resources{Unified: map[string]string{"memory.high": "1"}}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "negative shares", in: Resources{CPUShares: -2}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "tiny quota", in: Resources{CPUQuota: 500}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "quota below -1", in: Resources{CPUQuota: -5}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "period too long", in: Resources{CPUPeriod: 2000000}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "negative memory", in: Resources{MemoryLimitBytes: -1}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "swap below memory", in: Resources{MemoryLimitBytes: 64 << 20, MemorySwapLimitBytes: 32 << 20}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "swap without memory", in: Resources{MemorySwapLimitBytes: 32 << 20}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "swap below -1", in: Resources{MemoryLimitBytes: 64 << 20, MemorySwapLimitBytes: -2}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
		{name: "empty hugepage size", in: Resources{HugepageLimits: map[string]uint64{"": 1}}, mode: Legacy, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ToResources(tt.in, tt.mode)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("ToResources() = %+v, %v; want error %v", got, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ToResources() error = %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ToResources() =\n%s\nwant\n%s", dump(got), dump(tt.want))
			}
		})
	}
}

func TestToResourcesDoesNotAliasInput(t *testing.T) {
	in := Resources{Unified: map[string]string{"memory.high": "1"}}
	got, err := ToResources(in, Unified)
	if err != nil {
		t.Fatal(err)
	}
	got.Unified["memory.high"] = "2"
	if in.Unified["memory.high"] != "1" {
		t.Fatal("output shares the caller's Unified map")
	}
}
