package cgroups

import (
	"os"
	"strings"

	cg "github.com/opencontainers/cgroups"
)

// HasController reports whether the named controller (e.g. "hugetlb") can be
// used: mounted as a v1 hierarchy, or enabled at the root of the v2 tree on a
// unified node. The kernel may know a controller that the node never mounted,
// and asking runc to set its limits then fails the container.
func HasController(name string) bool {
	if DetectMode() == Unified {
		b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
		return err == nil && containsWord(string(b), name)
	}
	_, err := cg.FindCgroupMountpoint("", name)
	return err == nil
}

func containsWord(s, w string) bool {
	for _, f := range strings.Fields(s) {
		if f == w {
			return true
		}
	}
	return false
}
