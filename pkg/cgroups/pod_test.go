package cgroups

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// testCgroup returns a unique top-level cgroup path, removed (with anything left in it) when
// the test ends.
func testCgroup(t *testing.T) string {
	t.Helper()
	top := fmt.Sprintf("/berth-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	t.Cleanup(func() {
		if err := Remove(top); err != nil {
			t.Errorf("cleanup Remove(%s): %v", top, err)
		}
	})
	return top
}

// hierarchyDirs lists the directories path maps to, one per hierarchy.
func hierarchyDirs(t *testing.T, path string) []string {
	t.Helper()
	m, err := newManager(path)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, d := range m.GetPaths() {
		dirs = append(dirs, d)
	}
	slices.Sort(dirs)
	return dirs
}

// startInCgroup starts a shell in every hierarchy of path; it burns some CPU and touches
// memory once it is inside, then sleeps.
func startInCgroup(t *testing.T, path string) *exec.Cmd {
	t.Helper()
	return startScriptInCgroup(t, path, `i=0; while [ $i -lt 30000 ]; do i=$((i+1)); done; x=$(seq 1 20000); exec sleep 300`)
}

// startScriptInCgroup runs script under sh once the shell is in the cgroup at path.
func startScriptInCgroup(t *testing.T, path, script string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "read go; "+script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	m, err := newManager(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatalf("move pid %d into %s: %v", cmd.Process.Pid, path, err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func TestPodLifecycle(t *testing.T) {
	requireRoot(t)
	pod := filepath.Join(testCgroup(t), "kubepods", "pod1")
	ctr := ContainerPath(pod, "c1")

	if err := EnsurePod(pod); err != nil {
		t.Fatalf("EnsurePod: %v", err)
	}
	if err := EnsurePod(pod); err != nil {
		t.Fatalf("EnsurePod again: %v", err)
	}
	podDirs := hierarchyDirs(t, pod)
	wantHierarchies := []string{"cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids"}
	for _, h := range wantHierarchies {
		d := filepath.Join("/sys/fs/cgroup", h, pod)
		if _, err := os.Stat(d); err != nil && isMounted(h) {
			t.Errorf("pod cgroup missing in %s: %v", h, err)
		}
	}
	for _, d := range podDirs {
		if _, err := os.Stat(d); err != nil {
			t.Errorf("pod cgroup missing: %v", err)
		}
	}
	if DetectMode() == Hybrid && !slices.Contains(podDirs, filepath.Join("/sys/fs/cgroup/unified", pod)) {
		t.Errorf("hybrid node: pod not created in the unified hierarchy: %v", podDirs)
	}

	// A process in a container sub-cgroup, as libcontainer would place it.
	if err := EnsurePod(ctr); err != nil {
		t.Fatalf("EnsurePod(container): %v", err)
	}
	cmd := startInCgroup(t, ctr)

	var st *Stats
	deadline := time.Now().Add(10 * time.Second)
	for {
		var err error
		st, err = GetStats(pod)
		if err != nil {
			t.Fatalf("GetStats: %v", err)
		}
		// The shell forks a subshell for $(seq ...): wait for it to settle at the exec'd sleep.
		if st.CPUUsageNanos > 0 && st.MemoryUsageBytes > 0 && st.PidsCurrent == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st.PidsCurrent != 1 {
		t.Errorf("PidsCurrent = %d, want 1 (the shell, hierarchically)", st.PidsCurrent)
	}
	if st.CPUUsageNanos == 0 || st.CPUUsageNanos < st.CPUUserNanos {
		t.Errorf("cpu usage %d (user %d) not accounted", st.CPUUsageNanos, st.CPUUserNanos)
	}
	if st.MemoryUsageBytes == 0 || st.MemoryWorkingSetBytes > st.MemoryUsageBytes {
		t.Errorf("memory usage %d, working set %d", st.MemoryUsageBytes, st.MemoryWorkingSetBytes)
	}
	if st.MemoryLimitBytes == 0 {
		t.Errorf("memory limit not read")
	}
	if st.MemoryMaxUsageBytes < st.MemoryUsageBytes {
		t.Errorf("max usage %d below usage %d", st.MemoryMaxUsageBytes, st.MemoryUsageBytes)
	}
	// The shell's threads and its stdio are counted from /proc.
	if p := st.Procs; p.Processes != 1 || p.Threads != 1 || p.FileDescriptors < 3 {
		t.Errorf("process stats %+v, want the one shell with its fds", p)
	}
	if st.Timestamp.IsZero() || time.Since(st.Timestamp) > time.Minute {
		t.Errorf("timestamp %v", st.Timestamp)
	}
	if n, err := OOMEvents(pod); err != nil || n != 0 {
		t.Errorf("OOMEvents = %d, %v; want 0", n, err)
	}

	if err := Remove(pod); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	waitErr := make(chan error, 1)
	go func() { waitErr <- cmd.Wait() }()
	select {
	case err := <-waitErr:
		if err == nil || !strings.Contains(err.Error(), "killed") {
			t.Errorf("process exit = %v, want killed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("process in the removed cgroup still running")
	}
	for _, d := range append(podDirs, hierarchyDirs(t, ctr)...) {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Remove (%v)", d, err)
		}
	}
	if err := Remove(pod); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := GetStats(pod); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("GetStats after Remove = %v, want NotFound", err)
	}
}

func isMounted(hierarchy string) bool {
	_, err := os.Stat(filepath.Join("/sys/fs/cgroup", hierarchy, "cgroup.procs"))
	return err == nil
}

func TestRemoveRefusesDangerousPaths(t *testing.T) {
	for _, p := range []string{"/", "", "relative/pod", "/kubepods/../.."} {
		t.Run(strconv.Quote(p), func(t *testing.T) {
			if err := Remove(p); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Remove(%q) = %v, want InvalidArgument", p, err)
			}
			if err := EnsurePod(p); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("EnsurePod(%q) = %v, want InvalidArgument", p, err)
			}
		})
	}
}

func TestRemoveRefusesOwnCgroup(t *testing.T) {
	requireRoot(t)
	// Remove must never freeze or kill its caller: put this test process in the pod's pids
	// cgroup (harmless, undone in cleanup) and expect a refusal.
	pod := filepath.Join(testCgroup(t), "self")
	if err := EnsurePod(pod); err != nil {
		t.Fatal(err)
	}
	m, err := newManager(pod)
	if err != nil {
		t.Fatal(err)
	}
	pidsDir := m.Path("pids")
	if pidsDir == "" {
		t.Skip("no pids hierarchy")
	}
	orig := ownCgroupDir(t, "pids")
	if err := os.WriteFile(filepath.Join(pidsDir, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Every thread must go back, so write the process (cgroup.procs moves all threads).
		if err := os.WriteFile(filepath.Join(orig, "cgroup.procs"), []byte(strconv.Itoa(os.Getpid())), 0); err != nil {
			t.Errorf("move test process back: %v", err)
		}
	})
	if err := Remove(pod); !errors.Is(err, errdefs.ErrFailedPrecondition) {
		t.Fatalf("Remove(cgroup holding the caller) = %v, want FailedPrecondition", err)
	}
}

func ownCgroupDir(t *testing.T, controller string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			return filepath.Join("/sys/fs/cgroup", controller, parts[2])
		}
	}
	t.Fatalf("no %s cgroup for this process", controller)
	return ""
}

func TestDetectModeMatchesMounts(t *testing.T) {
	var want Mode
	switch {
	case isCgroup2("/sys/fs/cgroup"):
		want = Unified
	case isCgroup2("/sys/fs/cgroup/unified"):
		want = Hybrid
	default:
		want = Legacy
	}
	if got := DetectMode(); got != want {
		t.Fatalf("DetectMode() = %s, want %s", got, want)
	}
}

func isCgroup2(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, "cgroup.controllers"))
	return err == nil
}

// TestRemoveKillsForkingTree checks that a process that keeps forking cannot outrun Remove:
// the freezer stops new forks while the pids are signalled.
func TestRemoveKillsForkingTree(t *testing.T) {
	requireRoot(t)
	pod := filepath.Join(testCgroup(t), "forker")
	if err := EnsurePod(pod); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", `read go; while true; do sleep 100 & done`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	m, err := newManager(pod)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		pids, err := m.GetAllPids()
		if err != nil {
			t.Fatal(err)
		}
		if len(pids) > 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("forker did not fork: %v", pids)
		}
		time.Sleep(10 * time.Millisecond)
	}
	dirs := hierarchyDirs(t, pod)
	if err := Remove(pod); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	for _, d := range dirs {
		if _, err := os.Stat(d); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Remove (%v)", d, err)
		}
	}
}

// TestOOMEventsCounted runs a process past a memory limit and checks the kill is counted.
func TestOOMEventsCounted(t *testing.T) {
	requireRoot(t)
	pod := filepath.Join(testCgroup(t), "oom")
	if err := EnsurePod(pod); err != nil {
		t.Fatal(err)
	}
	if _, err := OOMEvents(pod + "-missing"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("OOMEvents(missing) = %v, want NotFound", err)
	}
	m, err := newManager(pod)
	if err != nil {
		t.Fatal(err)
	}
	const limit = 32 << 20
	limitFile := filepath.Join(m.Path("memory"), "memory.limit_in_bytes")
	if DetectMode() == Unified {
		limitFile = filepath.Join(m.Path(""), "memory.max")
	}
	if err := os.WriteFile(limitFile, []byte(strconv.Itoa(limit)), 0); err != nil {
		t.Fatal(err)
	}
	// tail keeps a newline-free input in memory, so it grows until the OOM killer stops it.
	cmd := exec.Command("sh", "-c", `read go; head -c 256m /dev/zero | tail >/dev/null`)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if err := m.Apply(cmd.Process.Pid); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(stdin, "go\n"); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()

	n, err := OOMEvents(pod)
	if err != nil || n < 1 {
		t.Fatalf("OOMEvents = %d, %v; want >= 1", n, err)
	}
	st, err := GetStats(pod)
	if err != nil {
		t.Fatal(err)
	}
	if st.OOMEvents != n || st.MemoryLimitBytes != limit {
		t.Fatalf("stats OOMEvents %d (want %d), limit %d (want %d)", st.OOMEvents, n, st.MemoryLimitBytes, limit)
	}
}
