package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	cg "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// killTimeout bounds how long Remove waits for leftover processes to die. SIGKILL cannot be
// ignored, so only tasks stuck in uninterruptible sleep (D state) outlive it.
const killTimeout = 10 * time.Second

// newManager builds a cgroupfs manager for an absolute cgroup path. The manager computes the
// per-hierarchy directories (v1: one per mounted controller plus name=systemd and, on hybrid
// nodes, the unified mount; v2: one directory) without touching the filesystem.
func newManager(p string) (cg.Manager, error) {
	// The v1 manager requires non-nil Resources; empty Resources set no limits.
	m, err := manager.New(&cg.Cgroup{Path: p, Resources: &cg.Resources{}})
	if err != nil {
		return nil, fmt.Errorf("cgroup manager for %q: %w", p, err)
	}
	return m, nil
}

// EnsurePod creates the pod cgroup path in every hierarchy. It is idempotent. No process is
// moved: Apply(-1) only creates directories (and, for cpuset, copies cpus/mems from the
// parent so tasks can later join). On a Unified node the pod's own subtree_control gets the
// delegated controllers too, while it is still empty: its children (the containers and the
// pod init's leaf) are then domain cgroups that take memory and io limits. The library
// enables controllers only above the cgroup it creates, and only when the container's
// cgroup is made, by which time the pod cgroup could no longer take them.
func EnsurePod(path string) error {
	p, err := ensure(path)
	if err != nil {
		return fmt.Errorf("create pod cgroup: %w", err)
	}
	if DetectMode() != Unified {
		return nil
	}
	if err := enableControllers(unifiedRoot, p); err != nil {
		return fmt.Errorf("create pod cgroup %q: %w", p, err)
	}
	return nil
}

// EnsureLeaf creates a cgroup meant to hold processes (the pod init's) in every hierarchy,
// with controllers enabled above it but not in it. It is idempotent.
func EnsureLeaf(path string) error {
	if _, err := ensure(path); err != nil {
		return fmt.Errorf("create leaf cgroup: %w", err)
	}
	return nil
}

// ensure validates path and creates it in every hierarchy, returning the clean path.
func ensure(path string) (string, error) {
	p, err := validatePath(path)
	if err != nil {
		return "", err
	}
	m, err := newManager(p)
	if err != nil {
		return "", err
	}
	if err := m.Apply(-1); err != nil {
		return "", fmt.Errorf("create cgroup %q: %w", p, err)
	}
	return p, nil
}

// Remove kills every process left in the cgroup (and its sub-cgroups) and removes it from every
// hierarchy. A cgroup that does not exist is not an error, so Remove can be retried.
func Remove(path string) error {
	p, err := validatePath(path)
	if err != nil {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	m, err := newManager(p)
	if err != nil {
		return fmt.Errorf("remove cgroup: %w", err)
	}
	dirs := existingDirs(m.GetPaths())
	if len(dirs) == 0 {
		return nil
	}
	if err := killAll(m, dirs); err != nil {
		return fmt.Errorf("remove cgroup %q: %w", p, err)
	}
	var errs []error
	for _, d := range dirs {
		// RemovePath removes sub-cgroups first and retries rmdir on EBUSY, which the kernel
		// returns for a short while after the last task of a cgroup exits.
		if err := cg.RemovePath(d); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("remove cgroup %q: %w", p, err)
	}
	return nil
}

// existingDirs returns the distinct hierarchy directories that exist, sorted for stable errors.
func existingDirs(paths map[string]string) []string {
	var dirs []string
	for _, d := range paths {
		if d == "" || slices.Contains(dirs, d) {
			continue
		}
		if _, err := os.Stat(d); err == nil {
			dirs = append(dirs, d)
		}
	}
	slices.Sort(dirs)
	return dirs
}

// killAll SIGKILLs the cgroup's processes until none are left. The cgroup is frozen while pids
// are read and signalled so a task cannot fork past us, and a pid read from cgroup.procs cannot
// exit and be reused by an unrelated process before the signal lands.
func killAll(m cg.Manager, dirs []string) error {
	deadline := time.Now().Add(killTimeout)
	delay := 5 * time.Millisecond
	for {
		pids, err := pidsIn(dirs)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if slices.Contains(pids, os.Getpid()) {
			// Freezing our own cgroup would hang us; killing it would kill us.
			return fmt.Errorf("cgroup holds this process (pid %d): %w", os.Getpid(), errdefs.ErrFailedPrecondition)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("processes %v still running %s after SIGKILL: %w", pids, killTimeout, errdefs.ErrUnavailable)
		}
		frozen := m.Freeze(cg.Frozen) == nil
		if frozen {
			// Re-read: the set may have changed between the first read and the freeze.
			if pids, err = pidsIn(dirs); err != nil {
				_ = m.Freeze(cg.Thawed)
				return err
			}
		}
		for _, pid := range pids {
			// ESRCH: already gone.
			_ = unix.Kill(pid, unix.SIGKILL)
		}
		if frozen {
			// Frozen tasks only act on SIGKILL once thawed.
			if err := m.Freeze(cg.Thawed); err != nil {
				return fmt.Errorf("thaw cgroup: %w", err)
			}
		}
		time.Sleep(delay)
		delay = min(delay*2, 200*time.Millisecond)
	}
}

// pidsIn lists the processes in the directories and their sub-cgroups, across hierarchies.
func pidsIn(dirs []string) ([]int, error) {
	var all []int
	for _, d := range dirs {
		pids, err := cg.GetAllPids(d)
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			return nil, fmt.Errorf("list processes in %s: %w", filepath.Clean(d), err)
		}
		for _, pid := range pids {
			if !slices.Contains(all, pid) {
				all = append(all, pid)
			}
		}
	}
	return all, nil
}
