package runtime

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

// memoryLimitFile reads the container's memory limit (v1 memory.limit_in_bytes, v2 memory.max).
func memoryLimitFile(t *testing.T, id string) string {
	t.Helper()
	for _, d := range runtimetest.CgroupDirs(t, runtimetest.CgroupRoot+"/"+id) {
		for _, f := range []string{"memory.limit_in_bytes", "memory.max"} {
			if b, err := os.ReadFile(filepath.Join(d, f)); err == nil {
				return strings.TrimSpace(string(b))
			}
		}
	}
	t.Fatalf("no memory limit file for %s", id)
	return ""
}

// startHolding starts a container, limited to 64 MiB, that puts 8 MB in its /dev/shm (tmpfs,
// charged to it and not reclaimable without swap), and waits until its cgroup is charged more
// than 6 MiB: more than runc init alone (about 2.5 MiB, charged to the container before it
// execs), so the fill is there.
func startHolding(t *testing.T, e *testEnv, name string) string {
	t.Helper()
	id, _ := e.create(t, name, []string{"sh", "-c", "head -c 8000000 /dev/zero > /dev/shm/fill; sleep 1000"},
		withMemoryLimit(64<<20))
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := e.m.Stats(id)
		if err != nil {
			t.Fatal(err)
		}
		if st.MemoryUsageBytes > 6<<20 {
			return id
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s usage %d never exceeded 6 MiB", id, st.MemoryUsageBytes)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A memory limit below what the container uses is refused before anything is written: the
// kernel would fail it with EBUSY (v1) or OOM-kill the container (v2).
func TestUpdateMemoryBelowUsageRefused(t *testing.T) {
	e := newTestManager(t)
	id := startHolding(t, e, "below-usage")
	limit := int64(1 << 20)
	err := e.m.Update(id, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), "current usage") {
		t.Fatalf("update below usage = %v, want FailedPrecondition naming the usage", err)
	}
	if got := memoryLimitFile(t, id); got != strconv.Itoa(64<<20) {
		t.Errorf("memory limit %s after a refused shrink, want the old %d", got, 64<<20)
	}
	st, err := e.m.State(id)
	if err != nil || st.Status != StatusRunning {
		t.Errorf("state after a refused shrink = %+v, %v; want running", st, err)
	}
	// A shrink that still fits goes through.
	limit = 32 << 20
	if err := e.m.Update(id, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatalf("shrink above usage: %v", err)
	}
	if got := memoryLimitFile(t, id); got != strconv.Itoa(32<<20) {
		t.Errorf("memory limit %s, want %d", got, 32<<20)
	}
}

// An update the kernel refuses half way (memory written, then a CPU quota under the 1 ms
// minimum) puts the container's previous limits back, not the refused ones.
func TestUpdateFailedSetRestoresLimits(t *testing.T) {
	e := newTestManager(t)
	id := startHolding(t, e, "restore")
	limit, quota, period := int64(32<<20), int64(500), uint64(100000)
	err := e.m.Update(id, &specs.LinuxResources{
		Memory: &specs.LinuxMemory{Limit: &limit},
		CPU:    &specs.LinuxCPU{Quota: &quota, Period: &period},
	})
	if err == nil {
		t.Fatal("update with a 500us CPU quota succeeded; the kernel's minimum is 1ms")
	}
	if got := memoryLimitFile(t, id); got != strconv.Itoa(64<<20) {
		t.Errorf("memory limit %s after a failed update, want the previous %d", got, 64<<20)
	}
}
