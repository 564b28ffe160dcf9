package runtime

import (
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/cgroups"
)

// Stats is a container's cgroup usage at one instant, in the units the CRI
// reports (nanoseconds, bytes, counts).
type Stats struct {
	Timestamp time.Time
	// CPUUsageNanos is cumulative CPU time of every process in the cgroup.
	CPUUsageNanos    uint64
	MemoryUsageBytes uint64
	// MemoryWorkingSetBytes is usage minus inactive file cache: what the
	// kubelet compares against the limit for evictions.
	MemoryWorkingSetBytes uint64
	MemoryRSSBytes        uint64
	MemoryLimitBytes      uint64 // 0 or a huge value when unlimited
	PageFaults            uint64
	MajorPageFaults       uint64
	SwapUsageBytes        uint64
	PidsCurrent           uint64
	PidsLimit             uint64 // 0 when unlimited
}

// Stats reads the container's cgroup counters. A container whose cgroup is
// gone (deleted, or inherited without libcontainer state) is
// errdefs.ErrFailedPrecondition.
func (m *Manager) Stats(id string) (Stats, error) {
	c, err := m.get(id)
	if err != nil {
		return Stats{}, err
	}
	cg, err := m.cgroupStats(c)
	if err != nil || cg == nil {
		if c.status().Status == StatusStopped {
			return Stats{}, fmt.Errorf("stats of %q: %v: %w", id, err, errdefs.ErrFailedPrecondition)
		}
		return Stats{}, fmt.Errorf("stats of %q: %w", id, err)
	}
	return convertStats(cg, time.Now()), nil
}

func (m *Manager) cgroupStats(c *container) (*cgroups.Stats, error) {
	if c.oci != nil {
		return m.statsOCI(c)
	}
	if c.lc == nil {
		return nil, fmt.Errorf("stats of %q: no cgroup known: %w", c.id, errdefs.ErrFailedPrecondition)
	}
	s, err := c.lc.Stats()
	if err != nil {
		return nil, err
	}
	return s.CgroupStats, nil
}

// convertStats reads both cgroup versions' names: v1 reports hierarchical
// totals as total_*, v2 only has the plain keys.
func convertStats(cg *cgroups.Stats, now time.Time) Stats {
	mem := cg.MemoryStats
	pick := func(keys ...string) uint64 {
		for _, k := range keys {
			if v, ok := mem.Stats[k]; ok {
				return v
			}
		}
		return 0
	}
	st := Stats{
		Timestamp:        now,
		CPUUsageNanos:    cg.CpuStats.CpuUsage.TotalUsage,
		MemoryUsageBytes: mem.Usage.Usage,
		MemoryRSSBytes:   pick("total_rss", "anon", "rss"),
		MemoryLimitBytes: mem.Usage.Limit,
		PageFaults:       pick("total_pgfault", "pgfault"),
		MajorPageFaults:  pick("total_pgmajfault", "pgmajfault"),
		PidsCurrent:      cg.PidsStats.Current,
		PidsLimit:        cg.PidsStats.Limit,
	}
	inactive := pick("total_inactive_file", "inactive_file")
	if st.MemoryUsageBytes > inactive {
		st.MemoryWorkingSetBytes = st.MemoryUsageBytes - inactive
	}
	// SwapUsage is memory+swap on both versions (v2 is made to look like v1).
	switch {
	case mem.SwapOnlyUsage.Usage > 0:
		st.SwapUsageBytes = mem.SwapOnlyUsage.Usage
	case mem.SwapUsage.Usage > mem.Usage.Usage:
		st.SwapUsageBytes = mem.SwapUsage.Usage - mem.Usage.Usage
	}
	return st
}
