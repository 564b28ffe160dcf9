package cgroups

import (
	"fmt"
	"maps"
	"slices"

	"github.com/containerd/errdefs"
	cg "github.com/opencontainers/cgroups"
)

// SetPod writes r to the existing cgroup at path in every hierarchy (cpu shares or weight,
// quota and period, cpuset, memory and swap, hugepages, unified files). Unset fields keep
// their current value. Memory limits below the cgroup's current usage are refused with
// errdefs.ErrFailedPrecondition before anything is written: on cgroup v2 the kernel would
// reclaim and then OOM-kill to fit, on v1 it fails with EBUSY after reclaiming.
func SetPod(path string, r Resources, mode Mode) error {
	p, err := validatePath(path)
	if err != nil {
		return fmt.Errorf("set pod cgroup: %w", err)
	}
	if err := validateResources(r, mode); err != nil {
		return fmt.Errorf("set pod cgroup %q: %w", p, err)
	}
	m, err := newManager(p)
	if err != nil {
		return fmt.Errorf("set pod cgroup: %w", err)
	}
	if !m.Exists() {
		return fmt.Errorf("set pod cgroup %q: %w", p, errdefs.ErrNotFound)
	}
	if err := checkMemoryFits(m.Path("memory"), r.MemoryLimitBytes, mode); err != nil {
		return fmt.Errorf("set pod cgroup %q: %w", p, err)
	}
	if err := m.Set(toCgroupResources(r, mode)); err != nil {
		return fmt.Errorf("set pod cgroup %q: %w", p, err)
	}
	return nil
}

// toCgroupResources converts r for the cgroup library. Devices are skipped: a pod update
// never changes device rules, and an empty rule set would deny every device.
func toCgroupResources(r Resources, mode Mode) *cg.Resources {
	out := &cg.Resources{
		SkipDevices: true,
		CpuQuota:    r.CPUQuota,
		CpuPeriod:   uint64(max(r.CPUPeriod, 0)),
		CpusetCpus:  r.CPUSetCPUs,
		CpusetMems:  r.CPUSetMems,
		Memory:      r.MemoryLimitBytes,
		MemorySwap:  r.MemorySwapLimitBytes,
	}
	if r.CPUShares > 0 {
		out.CpuShares = uint64(r.CPUShares)
		if mode.V2() {
			// The v2 library writes cpu.weight only; the conversion is the caller's (as runc's).
			out.CpuWeight = cg.ConvertCPUSharesToCgroupV2Value(out.CpuShares)
		}
	}
	for _, size := range slices.Sorted(maps.Keys(r.HugepageLimits)) {
		out.HugetlbLimit = append(out.HugetlbLimit, &cg.HugepageLimit{Pagesize: size, Limit: r.HugepageLimits[size]})
	}
	if len(r.Unified) > 0 {
		out.Unified = maps.Clone(r.Unified)
	}
	return out
}
