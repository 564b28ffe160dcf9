package kubelet_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// podCgroup is the pod cgroup the kubelet makes with the cgroupfs driver and
// cgroupsPerQOS: /kubepods/pod<uid> for Guaranteed pods, else below the QoS class.
func podCgroup(p pod) string {
	switch qos := strings.ToLower(p.Status.QOSClass); qos {
	case "guaranteed":
		return "/kubepods/pod" + p.Metadata.UID
	case "burstable", "besteffort":
		return "/kubepods/" + qos + "/pod" + p.Metadata.UID
	}
	return "/kubepods/besteffort/pod" + p.Metadata.UID
}

// procCgroup returns the cgroup of pid in the v1 hierarchy holding controller.
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
	base := filepath.Join(cgroupRoot, controller, podPath)
	var found string
	_ = filepath.WalkDir(base, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.IsDir() && strings.Contains(d.Name(), containerID) {
			found = strings.TrimPrefix(p, filepath.Join(cgroupRoot, controller))
			return filepath.SkipAll
		}
		return nil
	})
	if found == "" {
		return "", fmt.Errorf("no cgroup for container %s below %s (has %v)", containerID, base, dirNames(base))
	}
	return found, nil
}

// readCgroupInt reads one integer file of a cgroup in a v1 controller's hierarchy.
func readCgroupInt(controller, path, file string) (int64, error) {
	b, err := os.ReadFile(filepath.Join(cgroupRoot, controller, path, file))
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
}

// podCgroupDirs lists the pod's cgroup directory in every hierarchy where it exists.
func podCgroupDirs(podPath string) []string {
	var out []string
	for _, h := range dirNames(cgroupRoot) {
		d := filepath.Join(cgroupRoot, h, podPath)
		if _, err := os.Stat(d); err == nil {
			out = append(out, d)
		}
	}
	return out
}
