package kubelet_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/opencontainers/cgroups"
)

// hierarchies are the cgroup hierarchy roots: the one unified hierarchy on cgroup v2, each
// mounted v1 hierarchy (a controller's, or a named one) otherwise.
func hierarchies() []string {
	if cgroupV2() {
		return []string{cgroupRoot}
	}
	var out []string
	for _, h := range dirNames(cgroupRoot) {
		out = append(out, filepath.Join(cgroupRoot, h))
	}
	return out
}

// controllerRoot is the hierarchy holding controller: its v1 mount, or the unified one.
func controllerRoot(controller string) string {
	if cgroupV2() {
		return cgroupRoot
	}
	return filepath.Join(cgroupRoot, controller)
}

// procCgroup returns the cgroup of pid in the hierarchy holding controller (v1), or its one
// cgroup (v2: the "0::" line).
func procCgroup(pid int, controller string) (string, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		if parts[0] == "0" && parts[1] == "" && cgroupV2() {
			return parts[2], nil
		}
		for c := range strings.SplitSeq(parts[1], ",") {
			if c == controller {
				return parts[2], nil
			}
		}
	}
	return "", fmt.Errorf("pid %d has no %s cgroup", pid, controller)
}

// findContainerCgroup looks below the pod cgroup for the directory named
// after the container (berth may prefix or suffix the ID).
func findContainerCgroup(controller, podPath, containerID string) (string, error) {
	base := filepath.Join(controllerRoot(controller), podPath)
	var found string
	_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.Contains(d.Name(), containerID) {
			found = strings.TrimPrefix(p, controllerRoot(controller))
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return "", fmt.Errorf("no cgroup for container %s below %s (has %v)", containerID, base, dirNames(base))
	}
	return found, nil
}

// readCgroupInt reads one integer setting of a cgroup, named by its v1 file; on cgroup v2 it
// reads the unified file that holds it (cpu.shares as cpu.weight, converted as runc does, is
// compared by the caller through v2Shares).
func readCgroupInt(controller, path, file string) (int64, error) {
	name, field := file, 0
	if cgroupV2() {
		switch file {
		case "memory.limit_in_bytes":
			name = "memory.max"
		case "cpu.cfs_quota_us":
			name = "cpu.max"
		case "cpu.cfs_period_us":
			name, field = "cpu.max", 1
		case "cpu.shares":
			name = "cpu.weight"
		}
	}
	b, err := os.ReadFile(filepath.Join(controllerRoot(controller), path, name))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) <= field {
		return 0, fmt.Errorf("%s of %s: %q has no field %d", name, path, b, field)
	}
	return strconv.ParseInt(f[field], 10, 64)
}

// v2Shares is what cpu.shares becomes on cgroup v2 (cpu.weight), as runc converts it.
func v2Shares(shares int64) int64 {
	if !cgroupV2() {
		return shares
	}
	return int64(cgroups.ConvertCPUSharesToCgroupV2Value(uint64(shares)))
}

// podCgroupDirs lists the pod's cgroup directory in every hierarchy where it exists.
func podCgroupDirs(podPath string) []string {
	var out []string
	for _, h := range hierarchies() {
		d := filepath.Join(h, podPath)
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}
