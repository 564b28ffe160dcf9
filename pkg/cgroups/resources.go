package cgroups

import (
	"fmt"
	"maps"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Resources mirrors CRI LinuxContainerResources in plain Go types. Zero means "not set" for
// every field, as in the CRI API (proto3 has no presence for scalars).
type Resources struct {
	CPUShares  int64  // relative weight (v1 cpu.shares); converted to cpu.weight by runc on v2
	CPUQuota   int64  // microseconds per period; -1 is unlimited
	CPUPeriod  int64  // microseconds
	CPUSetCPUs string // e.g. "0-1,3"
	CPUSetMems string
	// MemoryLimitBytes caps memory. MemorySwapLimitBytes is the memory+swap cap (v1 memsw
	// semantics, like the OCI spec's Swap); -1 is unlimited swap.
	MemoryLimitBytes     int64
	MemorySwapLimitBytes int64
	HugepageLimits       map[string]uint64 // page size ("2MB", "1GB") -> limit in bytes
	Unified              map[string]string // raw cgroup v2 files, only on a unified node
}

// Kernel bounds for cpu.cfs_period_us and cpu.cfs_quota_us (kernel/sched/core.c); the kernel
// answers EINVAL outside them, which would surface late and unexplained from the shim.
const (
	minCPUPeriod = 1000
	maxCPUPeriod = 1000000
	minCPUQuota  = 1000
)

// ToResources converts CRI resources to an OCI LinuxResources for the node's cgroup mode. It
// fails with errdefs.ErrInvalidArgument on values the kernel would refuse, and on Unified
// entries when the node is not on cgroup v2 (they would be silently meaningless on v1).
func ToResources(r Resources, mode Mode) (*specs.LinuxResources, error) {
	if err := validateResources(r, mode); err != nil {
		return nil, fmt.Errorf("convert resources: %w", err)
	}
	out := &specs.LinuxResources{CPU: toCPU(r), Memory: toMemory(r)}
	for _, size := range slices.Sorted(maps.Keys(r.HugepageLimits)) {
		out.HugepageLimits = append(out.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: size, Limit: r.HugepageLimits[size]})
	}
	if len(r.Unified) > 0 {
		out.Unified = maps.Clone(r.Unified)
	}
	return out, nil
}

func toCPU(r Resources) *specs.LinuxCPU {
	var c specs.LinuxCPU
	set := false
	if r.CPUShares > 0 {
		shares := uint64(r.CPUShares)
		c.Shares, set = &shares, true
	}
	if r.CPUQuota != 0 {
		quota := r.CPUQuota
		c.Quota, set = &quota, true
	}
	if r.CPUPeriod != 0 {
		period := uint64(r.CPUPeriod)
		c.Period, set = &period, true
	}
	if r.CPUSetCPUs != "" {
		c.Cpus, set = r.CPUSetCPUs, true
	}
	if r.CPUSetMems != "" {
		c.Mems, set = r.CPUSetMems, true
	}
	if !set {
		return nil
	}
	return &c
}

func toMemory(r Resources) *specs.LinuxMemory {
	if r.MemoryLimitBytes == 0 && r.MemorySwapLimitBytes == 0 {
		return nil
	}
	var m specs.LinuxMemory
	if r.MemoryLimitBytes != 0 {
		limit := r.MemoryLimitBytes
		m.Limit = &limit
	}
	if r.MemorySwapLimitBytes != 0 {
		swap := r.MemorySwapLimitBytes
		m.Swap = &swap
	}
	return &m
}

func validateResources(r Resources, mode Mode) error {
	invalid := func(format string, args ...any) error {
		return fmt.Errorf(format+": %w", append(args, errdefs.ErrInvalidArgument)...)
	}
	switch {
	case r.CPUShares < 0:
		return invalid("cpu shares %d is negative", r.CPUShares)
	case r.CPUQuota < -1 || (r.CPUQuota > 0 && r.CPUQuota < minCPUQuota):
		return invalid("cpu quota %d must be -1 or at least %dus", r.CPUQuota, minCPUQuota)
	case r.CPUPeriod != 0 && (r.CPUPeriod < minCPUPeriod || r.CPUPeriod > maxCPUPeriod):
		return invalid("cpu period %d must be within [%d, %d]us", r.CPUPeriod, minCPUPeriod, maxCPUPeriod)
	case r.MemoryLimitBytes < 0:
		return invalid("memory limit %d is negative", r.MemoryLimitBytes)
	case r.MemorySwapLimitBytes < -1:
		return invalid("memory+swap limit %d must be -1 (unlimited) or positive", r.MemorySwapLimitBytes)
	case r.MemorySwapLimitBytes > 0 && r.MemoryLimitBytes == 0:
		// Without a memory limit, memory+swap has nothing to be measured against (runc on v2
		// refuses it; on v1 it would cap memory itself).
		return invalid("memory+swap limit %d needs a memory limit", r.MemorySwapLimitBytes)
	case r.MemorySwapLimitBytes > 0 && r.MemorySwapLimitBytes < r.MemoryLimitBytes:
		return invalid("memory+swap limit %d is below the memory limit %d", r.MemorySwapLimitBytes, r.MemoryLimitBytes)
	case len(r.Unified) > 0 && !mode.V2():
		return invalid("unified cgroup v2 resources %v given but the node runs cgroup %s mode", slices.Sorted(maps.Keys(r.Unified)), mode)
	}
	for size := range r.HugepageLimits {
		if size == "" {
			return invalid("hugepage limit with an empty page size")
		}
	}
	return nil
}
