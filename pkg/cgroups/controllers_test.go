package cgroups

import (
	"os"
	"strings"
	"testing"
)

// HasController must agree with what the node has mounted.
func TestHasControllerMatchesMounts(t *testing.T) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, ctrl := range []string{"memory", "pids", "hugetlb", "rdma"} {
		mounted := false
		for _, line := range strings.Split(string(mounts), "\n") {
			// v1 super options name the controller: "... - cgroup cgroup rw,memory".
			if i := strings.Index(line, " - cgroup cgroup "); i >= 0 && containsWord(strings.ReplaceAll(line[i:], ",", " "), ctrl) {
				mounted = true
			}
		}
		if DetectMode() == Unified {
			continue // checked through cgroup.controllers instead
		}
		if got := HasController(ctrl); got != mounted {
			t.Errorf("HasController(%q) = %v, mountinfo says %v", ctrl, got, mounted)
		}
	}
}
