package cgroups

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
)

// unifiedRoot is where a Unified node mounts its one hierarchy.
const unifiedRoot = "/sys/fs/cgroup"

// podInitName names the leaf cgroup of a pod's init. Container ids are 64 hex digits, so it
// cannot collide with a container's cgroup.
const podInitName = "pod-init"

// PodInitPath is the cgroup of a pod's init: a leaf below the pod's cgroup, beside the
// containers' cgroups. cgroup v2 lets processes live only in leaves once domain controllers
// (memory, io, cpu) are enabled below a cgroup, so an init sitting in the pod cgroup itself
// would keep the containers from getting limits. v1 has no such rule but uses the same layout,
// so both modes share one path.
func PodInitPath(podPath string) string {
	return path.Join(podPath, podInitName)
}

// delegatedControllers are the controllers a container's limits may need. Each is enabled in
// cgroup.subtree_control from the root down to the pod, where the node offers it.
func delegatedControllers() []string {
	return []string{"cpu", "cpuset", "io", "memory", "pids", "hugetlb"}
}

// enableControllers writes, at every level from root down to root/rel inclusive, the
// delegated controllers that level offers (its cgroup.controllers) into its
// cgroup.subtree_control. A level holding processes refuses (EBUSY): that is reported, not
// papered over, since its children would otherwise become threaded and refuse memory or io
// limits. The root level is exempt from that rule and always takes the write.
func enableControllers(root, rel string) error {
	dir := root
	levels := append([]string{""}, strings.Split(strings.Trim(path.Clean("/"+rel), "/"), "/")...)
	for i, part := range levels {
		if i > 0 {
			if part == "" {
				continue
			}
			dir = filepath.Join(dir, part)
		}
		if err := enableAt(dir); err != nil {
			return err
		}
	}
	return nil
}

// enableAt enables at dir those delegated controllers that dir offers and has not enabled yet.
func enableAt(dir string) error {
	offered, err := os.ReadFile(filepath.Join(dir, "cgroup.controllers"))
	if err != nil {
		return fmt.Errorf("read controllers of cgroup %q: %w", dir, err)
	}
	enabled, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		return fmt.Errorf("read subtree_control of cgroup %q: %w", dir, err)
	}
	var add []string
	for _, c := range delegatedControllers() {
		if containsWord(string(offered), c) && !containsWord(string(enabled), c) {
			add = append(add, "+"+c)
		}
	}
	if len(add) == 0 {
		return nil
	}
	if err := os.WriteFile(filepath.Join(dir, "cgroup.subtree_control"), []byte(strings.Join(add, " ")), 0); err != nil {
		return fmt.Errorf("enable controllers %v in cgroup %q: %w", add, dir, err)
	}
	return nil
}
