package cgroups

import (
	"encoding/json"
	"testing"

	cg "github.com/opencontainers/cgroups"
)

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}

func TestConvertStats(t *testing.T) {
	raw := func(usage, memsw, swapOnly uint64, stat map[string]uint64) *cg.Stats {
		s := cg.NewStats()
		s.CpuStats.CpuUsage = cg.CpuUsage{TotalUsage: 300, UsageInUsermode: 200, UsageInKernelmode: 100}
		s.MemoryStats.Usage = cg.MemoryData{Usage: usage, Limit: 1 << 30}
		s.MemoryStats.SwapUsage = cg.MemoryData{Usage: memsw}
		s.MemoryStats.SwapOnlyUsage = cg.MemoryData{Usage: swapOnly}
		s.MemoryStats.Stats = stat
		s.PidsStats = cg.PidsStats{Current: 3, Limit: 100}
		return s
	}
	tests := []struct {
		name string
		raw  *cg.Stats
		v2   bool
		want Stats
	}{
		{
			name: "v1 uses hierarchical total_ keys",
			raw: raw(1000, 1500, 0, map[string]uint64{
				"total_inactive_file": 400, "inactive_file": 1, "total_rss": 300, "rss": 1,
				"total_pgfault": 50, "total_pgmajfault": 5,
			}),
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 1000, MemoryWorkingSetBytes: 600, MemoryRSSBytes: 300, MemoryLimitBytes: 1 << 30,
				PageFaults: 50, MajorPageFaults: 5, SwapUsageBytes: 500, PidsCurrent: 3, PidsLimit: 100,
			},
		},
		{
			name: "v1 without swap accounting does not wrap",
			raw:  raw(1000, 0, 1<<63, map[string]uint64{}),
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 1000, MemoryWorkingSetBytes: 1000, MemoryLimitBytes: 1 << 30, PidsCurrent: 3, PidsLimit: 100,
			},
		},
		{
			name: "v2 keys",
			raw: raw(1000, 1700, 700, map[string]uint64{
				"inactive_file": 100, "anon": 800, "pgfault": 9, "pgmajfault": 2, "total_rss": 1,
			}),
			v2: true,
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 1000, MemoryWorkingSetBytes: 900, MemoryRSSBytes: 800, MemoryLimitBytes: 1 << 30,
				PageFaults: 9, MajorPageFaults: 2, SwapUsageBytes: 700, PidsCurrent: 3, PidsLimit: 100,
			},
		},
		{
			name: "inactive file above usage clamps working set to zero",
			raw:  raw(100, 100, 0, map[string]uint64{"total_inactive_file": 400}),
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 100, MemoryLimitBytes: 1 << 30, PidsCurrent: 3, PidsLimit: 100,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := convertStats(tt.raw, tt.v2)
			if *got != tt.want {
				t.Fatalf("convertStats() =\n%s\nwant\n%s", dump(got), dump(tt.want))
			}
		})
	}
}
