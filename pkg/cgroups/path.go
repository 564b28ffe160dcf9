package cgroups

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
)

// DefaultParent is the pod cgroup parent used when the kubelet sends none (critest does not).
const DefaultParent = "/berth"

// NormalizeParent turns a CRI cgroup_parent into a cgroupfs path relative to the hierarchy
// roots. The parent must fit the driver, as the kubelet's does: under cgroupfs a path
// ("/kubepods/burstable/pod<uid>"), under systemd a slice, by name
// ("kubepods-burstable-pod<uid>.slice", expanded the way systemd lays slices out) or by that
// expanded path, which is what the kubelet sends
// ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice"). Relative
// paths and ".." are refused: the result is later joined onto /sys/fs/cgroup/<controller>.
func NormalizeParent(parent, driver string) (string, error) {
	if driver != DriverCgroupfs && driver != DriverSystemd {
		return "", fmt.Errorf("normalize cgroup parent %q: unknown cgroup_driver %q: %w", parent, driver, errdefs.ErrInvalidArgument)
	}
	if parent == "" {
		if driver == DriverSystemd {
			return "/" + DefaultSlice, nil
		}
		return DefaultParent, nil
	}
	if isSliceName(parent) {
		if driver != DriverSystemd {
			return "", fmt.Errorf("cgroup parent %q is a systemd slice but cgroup_driver is %q (the kubelet's cgroupDriver must match berth's): %w", parent, driver, errdefs.ErrInvalidArgument)
		}
		p, err := expandSlice(parent)
		if err != nil {
			return "", fmt.Errorf("normalize cgroup parent %q: %w", parent, err)
		}
		return p, nil
	}
	if driver == DriverSystemd {
		return slicePath(parent)
	}
	p, err := validatePath(parent)
	if err != nil {
		return "", fmt.Errorf("normalize cgroup parent: %w", err)
	}
	return p, nil
}

// PodPath is the cgroup berth makes for a pod below parent when the kubelet gives none:
// <parent>/<sandbox id> under cgroupfs; under systemd a slice named after its parent slice, as
// systemd requires ("/berth.slice" -> "/berth.slice/berth-<sandbox id>.slice").
func PodPath(parent, driver, sandboxID string) string {
	if driver == DriverSystemd {
		stem := strings.TrimSuffix(path.Base(parent), ".slice")
		return path.Join(parent, stem+"-"+sandboxID+".slice")
	}
	return path.Join(parent, sandboxID)
}

// ContainerPath is the cgroup of a container inside its pod's cgroup.
func ContainerPath(podPath, containerID string) string {
	return path.Join(podPath, containerID)
}

// slicePath accepts a slice's cgroupfs path under the systemd driver: its last element a slice
// name and the path the one systemd gives that slice, since systemd places a slice by its name
// alone (the kubelet's ToSystemd writes these).
func slicePath(parent string) (string, error) {
	if !isSliceName(path.Base(parent)) {
		return "", fmt.Errorf("cgroup parent %q is not a systemd slice (a name such as \"kubepods.slice\" or its path) but cgroup_driver is %q (the kubelet's cgroupDriver must match berth's): %w", parent, DriverSystemd, errdefs.ErrInvalidArgument)
	}
	if _, _, err := splitSlicePath(parent); err != nil {
		return "", fmt.Errorf("normalize cgroup parent: %w", err)
	}
	return path.Clean(parent), nil
}

func isSliceName(s string) bool {
	return !strings.Contains(s, "/") && strings.HasSuffix(s, ".slice")
}

// expandSlice follows systemd's rule: each dash opens a nested slice, so "a-b-c.slice" lives
// at /a.slice/a-b.slice/a-b-c.slice.
func expandSlice(slice string) (string, error) {
	name := strings.TrimSuffix(slice, ".slice")
	if name == "-" || name == "" {
		return "", fmt.Errorf("the root slice %q cannot be a pod cgroup parent: %w", slice, errdefs.ErrInvalidArgument)
	}
	var b strings.Builder
	prefix := ""
	for _, part := range strings.Split(name, "-") {
		// Empty parts come from "--", or a leading or trailing dash, which systemd rejects.
		if part == "" || part == "." || part == ".." {
			return "", fmt.Errorf("invalid slice name %q: %w", slice, errdefs.ErrInvalidArgument)
		}
		b.WriteString("/" + prefix + part + ".slice")
		prefix += part + "-"
	}
	return b.String(), nil
}

// validatePath checks a cgroup path before it is joined onto hierarchy roots. The root itself
// is refused: removing it would kill every process on the node.
func validatePath(p string) (string, error) {
	if !path.IsAbs(p) {
		return "", fmt.Errorf("cgroup path %q is not absolute: %w", p, errdefs.ErrInvalidArgument)
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("cgroup path %q contains NUL: %w", p, errdefs.ErrInvalidArgument)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return "", fmt.Errorf("cgroup path %q contains \"..\": %w", p, errdefs.ErrInvalidArgument)
		}
	}
	clean := path.Clean(p)
	if clean == "/" {
		return "", fmt.Errorf("cgroup path %q is the hierarchy root: %w", p, errdefs.ErrInvalidArgument)
	}
	return clean, nil
}
