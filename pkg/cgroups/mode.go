package cgroups

import (
	cg "github.com/opencontainers/cgroups"
)

// Mode is how the node mounts cgroups.
type Mode int

const (
	// Legacy is cgroup v1 only: one hierarchy per controller.
	Legacy Mode = iota
	// Hybrid is cgroup v1 controllers plus a cgroup2 mount (usually at
	// /sys/fs/cgroup/unified) that holds no controllers; resources still go through v1.
	Hybrid
	// Unified is cgroup v2 only, mounted at /sys/fs/cgroup.
	Unified
)

func (m Mode) String() string {
	switch m {
	case Legacy:
		return "legacy"
	case Hybrid:
		return "hybrid"
	case Unified:
		return "unified"
	}
	return "unknown"
}

// V2 reports whether resources are controlled through cgroup v2 files.
func (m Mode) V2() bool { return m == Unified }

// DetectMode inspects the mounts under /sys/fs/cgroup. The answer cannot change while the
// node runs, and the library caches it.
func DetectMode() Mode {
	switch {
	case cg.IsCgroup2UnifiedMode():
		return Unified
	case cg.IsCgroup2HybridMode():
		return Hybrid
	}
	return Legacy
}
