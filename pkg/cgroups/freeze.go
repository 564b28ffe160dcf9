package cgroups

import (
	"fmt"

	cg "github.com/opencontainers/cgroups"
)

// Freeze freezes (frozen) or thaws the cgroup at path and its sub-cgroups: cgroup.freeze on
// a Unified node, freezer.state on v1. It returns once the kernel reports the new state, so
// that a frozen cgroup's tasks are all stopped when it returns. A pod checkpoint freezes
// every container before dumping any (one consistent cut of the pod); CRIU dumps a cgroup it
// finds frozen and leaves it frozen.
func Freeze(path string, frozen bool) error {
	p, err := validatePath(path)
	if err != nil {
		return fmt.Errorf("freeze cgroup: %w", err)
	}
	m, err := newManager(p)
	if err != nil {
		return fmt.Errorf("freeze cgroup: %w", err)
	}
	state, verb := cg.Thawed, "thaw"
	if frozen {
		state, verb = cg.Frozen, "freeze"
	}
	if err := m.Freeze(state); err != nil {
		return fmt.Errorf("%s cgroup %q: %w", verb, p, err)
	}
	return nil
}
