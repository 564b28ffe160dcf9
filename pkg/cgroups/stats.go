package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/containerd/errdefs"
	cg "github.com/opencontainers/cgroups"
)

// Stats is a point-in-time sample of a cgroup, hierarchical (a pod's figures include its
// containers). Memory figures are bytes, CPU figures cumulative nanoseconds.
type Stats struct {
	Timestamp time.Time

	CPUUsageNanos  uint64 // user + system
	CPUUserNanos   uint64
	CPUSystemNanos uint64

	MemoryUsageBytes uint64
	// MemoryWorkingSetBytes is usage minus inactive file cache: what the kubelet evicts on
	// (the same formula as cAdvisor).
	MemoryWorkingSetBytes uint64
	MemoryRSSBytes        uint64 // anonymous memory (v1 total_rss, v2 anon)
	MemoryLimitBytes      uint64 // as the kernel reports it; "unlimited" is a huge number
	PageFaults            uint64
	MajorPageFaults       uint64
	SwapUsageBytes        uint64 // swap only, not memory+swap

	PidsCurrent uint64
	PidsLimit   uint64 // 0 when unlimited

	OOMEvents uint64 // processes killed by the OOM killer in this cgroup
}

// GetStats samples the cgroup at path. A cgroup that does not exist gives errdefs.ErrNotFound.
func GetStats(path string) (*Stats, error) {
	p, err := validatePath(path)
	if err != nil {
		return nil, fmt.Errorf("cgroup stats: %w", err)
	}
	m, err := newManager(p)
	if err != nil {
		return nil, fmt.Errorf("cgroup stats: %w", err)
	}
	if !m.Exists() {
		return nil, fmt.Errorf("cgroup stats %q: %w", p, errdefs.ErrNotFound)
	}
	now := time.Now()
	raw, err := m.Stats(&cg.StatsOptions{Controllers: cg.CPU | cg.Memory | cg.Pids})
	if err != nil {
		return nil, fmt.Errorf("cgroup stats %q: %w", p, notFound(err))
	}
	ooms, err := m.OOMKillCount()
	if err != nil {
		return nil, fmt.Errorf("cgroup stats %q: oom count: %w", p, notFound(err))
	}
	s := convertStats(raw, DetectMode().V2())
	s.Timestamp = now
	s.OOMEvents = ooms
	return s, nil
}

// OOMEvents counts the processes the OOM killer killed in the cgroup (v1 memory.oom_control
// oom_kill, v2 memory.events oom_kill).
func OOMEvents(path string) (uint64, error) {
	p, err := validatePath(path)
	if err != nil {
		return 0, fmt.Errorf("cgroup oom events: %w", err)
	}
	m, err := newManager(p)
	if err != nil {
		return 0, fmt.Errorf("cgroup oom events: %w", err)
	}
	n, err := m.OOMKillCount()
	if err != nil {
		return 0, fmt.Errorf("cgroup oom events %q: %w", p, notFound(err))
	}
	return n, nil
}

// convertStats maps the library's stats to berth's. v1 memory.stat has hierarchical "total_"
// keys; v2 memory.stat is always hierarchical and names things differently.
func convertStats(raw *cg.Stats, v2 bool) *Stats {
	mem := raw.MemoryStats
	inactiveKey, rssKey, faultKey, majKey := "total_inactive_file", "total_rss", "total_pgfault", "total_pgmajfault"
	if v2 {
		inactiveKey, rssKey, faultKey, majKey = "inactive_file", "anon", "pgfault", "pgmajfault"
	}
	usage := mem.Usage.Usage
	swap := mem.SwapOnlyUsage.Usage
	if !v2 {
		// v1 reports memory+swap; without swap accounting memsw reads 0 and the library's
		// subtraction wraps around.
		swap = 0
		if mem.SwapUsage.Usage > usage {
			swap = mem.SwapUsage.Usage - usage
		}
	}
	ws := uint64(0)
	if inactive := mem.Stats[inactiveKey]; inactive < usage {
		ws = usage - inactive
	}
	return &Stats{
		CPUUsageNanos:         raw.CpuStats.CpuUsage.TotalUsage,
		CPUUserNanos:          raw.CpuStats.CpuUsage.UsageInUsermode,
		CPUSystemNanos:        raw.CpuStats.CpuUsage.UsageInKernelmode,
		MemoryUsageBytes:      usage,
		MemoryWorkingSetBytes: ws,
		MemoryRSSBytes:        mem.Stats[rssKey],
		MemoryLimitBytes:      mem.Usage.Limit,
		PageFaults:            mem.Stats[faultKey],
		MajorPageFaults:       mem.Stats[majKey],
		SwapUsageBytes:        swap,
		PidsCurrent:           raw.PidsStats.Current,
		PidsLimit:             raw.PidsStats.Limit,
	}
}

// notFound classifies a vanished cgroup (removed between calls) as errdefs.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	}
	return err
}
