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
// roots. Slice names ("kubepods-burstable-pod<uid>.slice") are expanded the way systemd lays
// them out, so callers that assume the systemd driver still work on a cgroupfs node. Relative
// paths and ".." are refused: the result is later joined onto /sys/fs/cgroup/<controller>.
func NormalizeParent(parent, driver string) (string, error) {
	if driver != DriverCgroupfs && driver != DriverSystemd {
		return "", fmt.Errorf("normalize cgroup parent %q: unknown cgroup driver %q: %w", parent, driver, errdefs.ErrInvalidArgument)
	}
	if parent == "" {
		if driver == DriverSystemd {
			return "/berth.slice", nil
		}
		return DefaultParent, nil
	}
	if isSliceName(parent) {
		p, err := expandSlice(parent)
		if err != nil {
			return "", fmt.Errorf("normalize cgroup parent %q: %w", parent, err)
		}
		return p, nil
	}
	if driver == DriverSystemd {
		return "", fmt.Errorf("normalize cgroup parent %q: the systemd driver expects a slice name such as \"kubepods.slice\": %w", parent, errdefs.ErrInvalidArgument)
	}
	p, err := validatePath(parent)
	if err != nil {
		return "", fmt.Errorf("normalize cgroup parent: %w", err)
	}
	return p, nil
}

// ContainerPath is the cgroup of a container inside its pod's cgroup.
func ContainerPath(podPath, containerID string) string {
	return path.Join(podPath, containerID)
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
