package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/containerd/errdefs"
	cg "github.com/opencontainers/cgroups"
	cgfs "github.com/opencontainers/cgroups/fs"
	"github.com/opencontainers/cgroups/fs2"
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

	// The memory figures cAdvisor exports beside usage: page cache, mapped files, kernel
	// memory (v1 memory.kmem.usage_in_bytes, v2 the "kernel" stat), the peak usage and how
	// often the limit was hit (v1 failcnt, v2 memory.events max).
	MemoryCacheBytes      uint64
	MemoryMappedFileBytes uint64
	MemoryKernelBytes     uint64
	MemoryMaxUsageBytes   uint64
	MemoryFailcnt         uint64

	// CFS bandwidth control: enforcement periods, those in which the quota ran out, and the
	// time spent throttled.
	CFSPeriods          uint64
	CFSThrottledPeriods uint64
	CFSThrottledNanos   uint64

	PidsCurrent uint64
	PidsLimit   uint64 // 0 when unlimited

	OOMEvents uint64 // processes killed by the OOM killer in this cgroup

	// Block I/O per device and operation (Read, Write, Sync, Async, Discard, Total): bytes
	// (v1 blkio.throttle.io_service_bytes_recursive, v2 io.stat) and operations.
	IOServiceBytes []BlkioEntry
	IOServiced     []BlkioEntry

	Procs ProcStats
}

// BlkioEntry is one device's counter for one operation.
type BlkioEntry struct {
	Major, Minor uint64
	Op           string
	Value        uint64
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
	raw, err := m.Stats(&cg.StatsOptions{Controllers: cg.CPU | cg.Memory | cg.Pids | cg.IO})
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
	// A cgroup emptied or removed meanwhile just has no processes to count.
	if pids, err := m.GetAllPids(); err == nil {
		s.Procs = procStats("/proc", pids)
	}
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
	cacheKey, mappedKey := "total_cache", "total_mapped_file"
	kernel := mem.KernelUsage.Usage
	if v2 {
		inactiveKey, rssKey, faultKey, majKey = "inactive_file", "anon", "pgfault", "pgmajfault"
		cacheKey, mappedKey = "file", "file_mapped"
		kernel = mem.Stats["kernel"]
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
		MemoryCacheBytes:      mem.Stats[cacheKey],
		MemoryMappedFileBytes: mem.Stats[mappedKey],
		MemoryKernelBytes:     kernel,
		MemoryMaxUsageBytes:   mem.Usage.MaxUsage,
		MemoryFailcnt:         mem.Usage.Failcnt,
		CFSPeriods:            raw.CpuStats.ThrottlingData.Periods,
		CFSThrottledPeriods:   raw.CpuStats.ThrottlingData.ThrottledPeriods,
		CFSThrottledNanos:     raw.CpuStats.ThrottlingData.ThrottledTime,
		PidsCurrent:           raw.PidsStats.Current,
		PidsLimit:             raw.PidsStats.Limit,
		IOServiceBytes:        blkioEntries(raw.BlkioStats.IoServiceBytesRecursive),
		IOServiced:            blkioEntries(raw.BlkioStats.IoServicedRecursive),
	}
}

func blkioEntries(in []cg.BlkioStatEntry) []BlkioEntry {
	if len(in) == 0 {
		return nil
	}
	out := make([]BlkioEntry, len(in))
	for i, e := range in {
		out[i] = BlkioEntry{Major: e.Major, Minor: e.Minor, Op: e.Op, Value: e.Value}
	}
	return out
}

// notFound classifies a vanished cgroup (removed between calls) as errdefs.ErrNotFound.
func notFound(err error) error {
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%w: %w", errdefs.ErrNotFound, err)
	}
	return err
}

// OOMKills reads the OOM-kill counter of a container's memory cgroup, given the cgroup paths
// libcontainer reports for it (controller name -> absolute path; "" is the unified hierarchy).
// The kernel raises the counter before it sends the OOM killer's SIGKILL (mm/oom_kill.c: "task
// reaper must see this"), so a reader who saw the victim die reads a counter that includes it:
// no waiting for the asynchronous OOM notification is needed.
func OOMKills(paths map[string]string) (uint64, error) {
	// On a hybrid node the unified hierarchy is there too, but memory is a v1 controller.
	if p, ok := paths["memory"]; ok {
		n, err := cgfs.OOMKillCount(p)
		if err != nil {
			return 0, fmt.Errorf("cgroup oom kills %q: %w", p, notFound(err))
		}
		return n, nil
	}
	p, ok := paths[""]
	if !ok {
		return 0, fmt.Errorf("cgroup oom kills: no memory cgroup: %w", errdefs.ErrNotFound)
	}
	n, err := fs2.OOMKillCount(p)
	if err != nil {
		return 0, fmt.Errorf("cgroup oom kills %q: %w", p, notFound(err))
	}
	return n, nil
}
