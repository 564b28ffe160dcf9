package cgroups

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"reflect"
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
		s.CpuStats.ThrottlingData = cg.ThrottlingData{Periods: 10, ThrottledPeriods: 4, ThrottledTime: 7e9}
		s.MemoryStats.Usage.MaxUsage, s.MemoryStats.Usage.Failcnt = 1200, 2
		s.MemoryStats.KernelUsage = cg.MemoryData{Usage: 64}
		s.BlkioStats.IoServiceBytesRecursive = []cg.BlkioStatEntry{{Major: 8, Minor: 0, Op: "Read", Value: 4096}}
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
				"total_pgfault": 50, "total_pgmajfault": 5, "total_cache": 200, "cache": 1, "total_mapped_file": 30,
			}),
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 1000, MemoryWorkingSetBytes: 600, MemoryRSSBytes: 300, MemoryLimitBytes: 1 << 30,
				PageFaults: 50, MajorPageFaults: 5, SwapUsageBytes: 500, PidsCurrent: 3, PidsLimit: 100,
				MemoryCacheBytes: 200, MemoryMappedFileBytes: 30, MemoryKernelBytes: 64, MemoryMaxUsageBytes: 1200, MemoryFailcnt: 2, CFSPeriods: 10, CFSThrottledPeriods: 4, CFSThrottledNanos: 7e9,
				IOServiceBytes: []BlkioEntry{{Major: 8, Minor: 0, Op: "Read", Value: 4096}},
			},
		},
		{
			name: "v1 without swap accounting does not wrap",
			raw:  raw(1000, 0, 1<<63, map[string]uint64{}),
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 1000, MemoryWorkingSetBytes: 1000, MemoryLimitBytes: 1 << 30, PidsCurrent: 3, PidsLimit: 100,
				MemoryKernelBytes: 64, MemoryMaxUsageBytes: 1200, MemoryFailcnt: 2, CFSPeriods: 10, CFSThrottledPeriods: 4, CFSThrottledNanos: 7e9,
				IOServiceBytes: []BlkioEntry{{Major: 8, Minor: 0, Op: "Read", Value: 4096}},
			},
		},
		{
			name: "v2 keys",
			raw: raw(1000, 1700, 700, map[string]uint64{
				"inactive_file": 100, "anon": 800, "pgfault": 9, "pgmajfault": 2, "total_rss": 1,
				"file": 150, "file_mapped": 20, "kernel": 90, "total_cache": 1,
			}),
			v2: true,
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 1000, MemoryWorkingSetBytes: 900, MemoryRSSBytes: 800, MemoryLimitBytes: 1 << 30,
				PageFaults: 9, MajorPageFaults: 2, SwapUsageBytes: 700, PidsCurrent: 3, PidsLimit: 100,
				MemoryCacheBytes: 150, MemoryMappedFileBytes: 20, MemoryKernelBytes: 90, MemoryMaxUsageBytes: 1200, MemoryFailcnt: 2, CFSPeriods: 10, CFSThrottledPeriods: 4, CFSThrottledNanos: 7e9,
				IOServiceBytes: []BlkioEntry{{Major: 8, Minor: 0, Op: "Read", Value: 4096}},
			},
		},
		{
			name: "inactive file above usage clamps working set to zero",
			raw:  raw(100, 100, 0, map[string]uint64{"total_inactive_file": 400}),
			want: Stats{
				CPUUsageNanos: 300, CPUUserNanos: 200, CPUSystemNanos: 100,
				MemoryUsageBytes: 100, MemoryLimitBytes: 1 << 30, PidsCurrent: 3, PidsLimit: 100,
				MemoryKernelBytes: 64, MemoryMaxUsageBytes: 1200, MemoryFailcnt: 2, CFSPeriods: 10, CFSThrottledPeriods: 4, CFSThrottledNanos: 7e9,
				IOServiceBytes: []BlkioEntry{{Major: 8, Minor: 0, Op: "Read", Value: 4096}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := convertStats(tt.raw, tt.v2)
			if !reflect.DeepEqual(*got, tt.want) {
				t.Fatalf("convertStats() =\n%s\nwant\n%s", dump(got), dump(tt.want))
			}
		})
	}
}

func TestProcStats(t *testing.T) {
	// This test process: its threads, its open fds and one socket it opens for the check.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	self := os.Getpid()
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	tests := []struct {
		name string
		pids []int
		want func(ProcStats) bool
	}{
		{"none", nil, func(s ProcStats) bool { return s == ProcStats{} }},
		{"gone pid counts nothing", []int{1 << 30}, func(s ProcStats) bool { return s == ProcStats{} }},
		{"self", []int{self}, func(s ProcStats) bool {
			return s.Processes == 1 && s.Threads >= uint64(len(tasks))/2 && s.Sockets >= 1 && s.FileDescriptors > s.Sockets
		}},
		{"self and sleep", []int{self, cmd.Process.Pid}, func(s ProcStats) bool {
			return s.Processes == 2 && s.Threads >= 2 && s.Sockets >= 1 && s.FileDescriptors >= 4
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := procStats("/proc", tt.pids); !tt.want(got) {
				t.Errorf("procStats(%v) = %+v", tt.pids, got)
			}
		})
	}
}
