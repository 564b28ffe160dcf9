package kubelet_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestRemoveManifestLeavesNothing: deleting the manifest makes the kubelet
// stop and remove the pod, and nothing of it survives in the kernel: no
// mounts, pinned namespaces, cgroups or processes.
func TestRemoveManifestLeavesNothing(t *testing.T) {
	t.Parallel()
	const name = "removal"
	runPod(t, newPod(name, withEmptyDir("scratch"),
		withContainer(withMount(shell("one", "echo x > /scratch/f; sleep 3600"), "scratch", "/scratch")),
		withContainer(shell("two", "sleep 3600")),
	))
	p := waitPod(t, name, 2*time.Minute, "both containers running", func(p pod) bool {
		return running("one")(p) && running("two")(p)
	})
	sb, err := crictlReadyPod(name)
	if err != nil {
		t.Fatal(err)
	}

	// What the pod holds while it runs; each must exist now, or the check after is vacuous.
	ids := []string{sb.ID}
	var pids []int
	for _, c := range p.Status.ContainerStatuses {
		id := runtimeID(c.ContainerID)
		ids = append(ids, id)
		insp, err := crictlInspect(id)
		if err != nil {
			t.Fatal(err)
		}
		if pid := insp.pid(); pid > 0 {
			pids = append(pids, pid)
		}
	}
	if len(pids) == 0 {
		t.Error("crictl inspect: berth reports no container pid in its verbose info")
		pids = podProcesses(podCgroup(p))
	}
	podPath := podCgroup(p)
	held := podHoldings(ids, p.Metadata.UID, podPath)
	if len(held.mounts) == 0 || len(held.cgroups) == 0 || len(pids) == 0 {
		t.Fatalf("while running: found mounts %v, cgroups %v, pids %v; want some of each", held.mounts, held.cgroups, pids)
	}
	t.Logf("while running: %d mounts, %d cgroup dirs, %d processes, shims %v, namespaces %v",
		len(held.mounts), len(held.cgroups), len(pids), held.shims, held.netns)

	removePod(t, name)

	// The kubelet removes the pod cgroup in its housekeeping, shortly after.
	waitFor(t, time.Minute, "nothing of the pod left", func() (bool, string) {
		left := podHoldings(ids, p.Metadata.UID, podPath)
		var alive []int
		for _, pid := range pids {
			if processAlive(pid) {
				alive = append(alive, pid)
			}
		}
		if len(left.mounts)+len(left.cgroups)+len(left.shims)+len(left.netns)+len(left.dirs)+len(alive) == 0 {
			return true, ""
		}
		return false, fmt.Sprintf("left: %+v, live pids %v", left, alive)
	})
}

// holdings are the kernel objects and state that name a pod or its containers.
type holdings struct {
	mounts, cgroups, shims, netns, dirs []string
}

func podHoldings(ids []string, uid, podPath string) holdings {
	var h holdings
	b, _ := os.ReadFile("/proc/self/mountinfo")
	kubeletPodDir := filepath.Join(env.kubelet.rootDir, "pods", uid)
	for line := range strings.SplitSeq(string(b), "\n") {
		if containsAny(line, ids...) || strings.Contains(line, kubeletPodDir) {
			if f := strings.Fields(line); len(f) > 4 {
				h.mounts = append(h.mounts, unescapeMount(f[4]))
			}
		}
	}
	h.cgroups = podCgroupDirs(podPath)
	for _, e := range dirNames("/proc") {
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e, "cmdline"))
		args := strings.ReplaceAll(strings.TrimRight(string(cmdline), "\x00"), "\x00", " ")
		if strings.Contains(args, "shim") && containsAny(args, ids...) {
			h.shims = append(h.shims, e+" "+args)
		}
	}
	for _, n := range dirNames("/run/netns") {
		if !env.before.netns[n] && containsAny(n, ids...) {
			h.netns = append(h.netns, "/run/netns/"+n)
		}
	}
	// berth's own per-pod and per-container state directories.
	for _, sub := range []string{"netns", "sandboxes", "shims", "containers"} {
		for _, n := range dirNames(filepath.Join(env.agent.state, sub)) {
			if containsAny(n, ids...) {
				h.dirs = append(h.dirs, filepath.Join(env.agent.state, sub, n))
			}
		}
	}
	for _, n := range dirNames(filepath.Join(env.agent.root, "containers")) {
		if containsAny(n, ids...) {
			h.dirs = append(h.dirs, filepath.Join(env.agent.root, "containers", n))
		}
	}
	return h
}

// podProcesses lists the pids in the pod's memory cgroup and below.
func podProcesses(podPath string) []int {
	var pids []int
	_ = filepath.WalkDir(filepath.Join(controllerRoot("memory"), podPath), func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || d.Name() != "cgroup.procs" {
			return nil
		}
		b, _ := os.ReadFile(p)
		for f := range strings.FieldsSeq(string(b)) {
			var pid int
			if _, err := fmt.Sscan(f, &pid); err == nil {
				pids = append(pids, pid)
			}
		}
		return nil
	})
	return pids
}

// processAlive is true for a live process; a zombie has already released
// everything but its pid, and its reaper is not ours.
func processAlive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(b), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func containsAny(s string, subs ...string) bool {
	for _, sub := range subs {
		if sub != "" && strings.Contains(s, sub) {
			return true
		}
	}
	return false
}
