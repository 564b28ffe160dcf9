package cgroups

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// readCgroupFile reads one file of the pod cgroup: dir is the v1 hierarchy name, ignored on v2.
func readCgroupFile(t *testing.T, path, v1dir, file string) string {
	t.Helper()
	root := filepath.Join("/sys/fs/cgroup", v1dir)
	if DetectMode().V2() {
		root = "/sys/fs/cgroup"
	}
	b, err := os.ReadFile(filepath.Join(root, path, file))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestSetPodGrowAndShrink(t *testing.T) {
	requireRoot(t)
	mode := DetectMode()
	pod := filepath.Join(testCgroup(t), "pod1")
	if err := EnsurePod(pod); err != nil {
		t.Fatal(err)
	}
	startInCgroup(t, pod)

	steps := []struct {
		name string
		res  Resources
	}{
		{"grow", Resources{CPUShares: 2048, CPUQuota: 200000, CPUPeriod: 100000, MemoryLimitBytes: 256 << 20}},
		{"shrink", Resources{CPUShares: 512, CPUQuota: 50000, CPUPeriod: 100000, MemoryLimitBytes: 64 << 20}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if err := SetPod(pod, step.res, mode); err != nil {
				t.Fatalf("SetPod: %v", err)
			}
			r := step.res
			if mode.V2() {
				wantMax := itoa(r.CPUQuota) + " " + itoa(r.CPUPeriod)
				if got := readCgroupFile(t, pod, "", "cpu.max"); got != wantMax {
					t.Errorf("cpu.max = %q, want %q", got, wantMax)
				}
				if got := readCgroupFile(t, pod, "", "memory.max"); got != itoa(r.MemoryLimitBytes) {
					t.Errorf("memory.max = %q, want %d", got, r.MemoryLimitBytes)
				}
				return
			}
			if got := readCgroupFile(t, pod, "cpu", "cpu.shares"); got != itoa(r.CPUShares) {
				t.Errorf("cpu.shares = %q, want %d", got, r.CPUShares)
			}
			if got := readCgroupFile(t, pod, "cpu", "cpu.cfs_quota_us"); got != itoa(r.CPUQuota) {
				t.Errorf("cpu.cfs_quota_us = %q, want %d", got, r.CPUQuota)
			}
			if got := readCgroupFile(t, pod, "memory", "memory.limit_in_bytes"); got != itoa(r.MemoryLimitBytes) {
				t.Errorf("memory.limit_in_bytes = %q, want %d", got, r.MemoryLimitBytes)
			}
		})
	}
}

func TestSetPodBelowUsageRefused(t *testing.T) {
	requireRoot(t)
	mode := DetectMode()
	pod := filepath.Join(testCgroup(t), "pod1")
	if err := EnsurePod(pod); err != nil {
		t.Fatal(err)
	}
	if err := SetPod(pod, Resources{MemoryLimitBytes: 128 << 20}, mode); err != nil {
		t.Fatal(err)
	}
	holdMemory(t, pod)
	err := SetPod(pod, Resources{MemoryLimitBytes: 16 << 10}, mode)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !strings.Contains(err.Error(), "current usage") {
		t.Fatalf("SetPod below usage = %v, want FailedPrecondition naming the usage", err)
	}
	file, dir := "memory.limit_in_bytes", "memory"
	if mode.V2() {
		file, dir = "memory.max", ""
	}
	if got := readCgroupFile(t, pod, dir, file); got != itoa(128<<20) {
		t.Errorf("%s = %q after a refused shrink, want the old %d", file, got, 128<<20)
	}
}

func TestSetPodMissingCgroup(t *testing.T) {
	requireRoot(t)
	err := SetPod(filepath.Join(testCgroup(t), "absent"), Resources{CPUShares: 2}, DetectMode())
	if !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("SetPod on a missing cgroup = %v, want NotFound", err)
	}
}

func itoa(v int64) string { return strconv.FormatInt(v, 10) }

// holdMemory starts a shell in the cgroup at path that keeps ~100 KiB in a variable and
// waits on stdin (no child to outlive it), and waits for the usage to pass 64 KiB. Tests of a
// limit below the usage need the usage to stay: startInCgroup's process execs sleep, which
// frees what it used, so its usage could fall below a 16 KiB limit between wait and check.
func holdMemory(t *testing.T, path string) {
	t.Helper()
	startScriptInCgroup(t, path, `x=$(seq 1 20000); read stop`)
	waitMemoryUsage(t, path, 64<<10)
}

// waitMemoryUsage waits until the cgroup is charged more than min bytes: on v1 a moved task's
// pages stay charged to its old cgroup, only what it touches afterwards counts here.
func waitMemoryUsage(t *testing.T, path string, min uint64) {
	t.Helper()
	m, err := newManager(path)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		usage, err := memoryUsage(m.Path("memory"), DetectMode())
		if err != nil {
			t.Fatal(err)
		}
		if usage > min {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroup %s usage %d never exceeded %d", path, usage, min)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
