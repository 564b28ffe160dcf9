package spec

import (
	"fmt"
	"maps"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Resources converts CRI resources to OCI cgroup settings; zero CRI values mean "not set".
// It serves both CreateContainer and UpdateContainerResources (which uses only opts.CgroupV2 and
// opts.PidsLimit). Device rules are not part of it: they are fixed at create.
//
// memory_swap_limit_in_bytes is memory+swap (the cgroup v1 memsw limit), which is also what OCI
// memory.swap means, so it passes through unchanged; runc converts it for cgroup v2.
// Unified entries only exist on cgroup v2 and are dropped on v1: the kubelet only sends them on v2.
func Resources(r *runtimeapi.LinuxContainerResources, opts Options) (*specs.LinuxResources, error) {
	out := &specs.LinuxResources{}
	if r != nil {
		cpu, err := cpuResources(r)
		if err != nil {
			return nil, err
		}
		out.CPU = cpu
		mem, err := memoryResources(r)
		if err != nil {
			return nil, err
		}
		out.Memory = mem
		for _, h := range r.GetHugepageLimits() {
			if h.GetPageSize() == "" {
				return nil, fmt.Errorf("hugepage limit without page size: %w", errdefs.ErrInvalidArgument)
			}
			if !opts.NoHugetlb {
				out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
			}
		}
		if opts.CgroupV2 && len(r.GetUnified()) > 0 {
			out.Unified = maps.Clone(r.GetUnified())
		}
	}
	if opts.PidsLimit > 0 {
		out.Pids = &specs.LinuxPids{Limit: ptr(opts.PidsLimit)}
	}
	return out, nil
}

func cpuResources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxCPU, error) {
	if r.GetCpuShares() < 0 || r.GetCpuPeriod() < 0 {
		return nil, fmt.Errorf("negative cpu shares %d or period %d: %w", r.GetCpuShares(), r.GetCpuPeriod(), errdefs.ErrInvalidArgument)
	}
	cpu := &specs.LinuxCPU{Cpus: r.GetCpusetCpus(), Mems: r.GetCpusetMems()}
	if v := r.GetCpuShares(); v != 0 {
		cpu.Shares = ptr(uint64(v))
	}
	// A quota of -1 (unlimited) is meaningful, only 0 means unset.
	if v := r.GetCpuQuota(); v != 0 {
		cpu.Quota = ptr(v)
	}
	if v := r.GetCpuPeriod(); v != 0 {
		cpu.Period = ptr(uint64(v))
	}
	if *cpu == (specs.LinuxCPU{}) {
		return nil, nil
	}
	return cpu, nil
}

func memoryResources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxMemory, error) {
	limit, swap := r.GetMemoryLimitInBytes(), r.GetMemorySwapLimitInBytes()
	if limit < 0 {
		return nil, fmt.Errorf("negative memory limit %d: %w", limit, errdefs.ErrInvalidArgument)
	}
	if swap < -1 {
		return nil, fmt.Errorf("memory+swap limit %d: %w", swap, errdefs.ErrInvalidArgument)
	}
	// The kernel refuses memsw below the memory limit, and a memsw limit without a memory
	// limit; say so here rather than as a cgroup write error inside the shim.
	if swap > 0 && (limit == 0 || swap < limit) {
		return nil, fmt.Errorf("memory+swap limit %d must be at least the memory limit %d: %w", swap, limit, errdefs.ErrInvalidArgument)
	}
	if limit == 0 && swap == 0 {
		return nil, nil
	}
	mem := &specs.LinuxMemory{}
	if limit != 0 {
		mem.Limit = ptr(limit)
	}
	if swap != 0 {
		mem.Swap = ptr(swap)
	}
	return mem, nil
}

func ptr[T any](v T) *T { return &v }
