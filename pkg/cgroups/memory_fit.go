package cgroups

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
)

// MemoryFits refuses (errdefs.ErrFailedPrecondition) a memory limit below the current usage
// of a container's memory cgroup, given the cgroup paths libcontainer reports for it
// (controller name -> absolute path; "" is the unified hierarchy). The kernel gives no clear
// answer to such a limit: v1 reclaims and then fails the write with EBUSY, v2 takes the limit
// and OOM-kills the container to meet it. Usage counts page cache the kernel could reclaim;
// the kubelet refuses a resize by the same rule (usage against the new limit) before it asks,
// so the two agree. A limit of 0 or -1 (none) and a container without a memory cgroup pass.
func MemoryFits(paths map[string]string, limit int64) error {
	// On a hybrid node the unified hierarchy is there too, but memory is a v1 controller.
	if dir, ok := paths["memory"]; ok {
		return checkMemoryFits(dir, limit, Legacy)
	}
	return checkMemoryFits(paths[""], limit, Unified)
}

// checkMemoryFits refuses a memory limit below the memory cgroup's current usage.
func checkMemoryFits(dir string, limit int64, mode Mode) error {
	if limit <= 0 || dir == "" {
		return nil
	}
	usage, err := memoryUsage(dir, mode)
	if err != nil {
		return err
	}
	if uint64(limit) < usage {
		return fmt.Errorf("memory limit %d is below the current usage %d: %w", limit, usage, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// memoryUsage reads the memory cgroup's usage (v2 memory.current, v1 memory.usage_in_bytes).
func memoryUsage(dir string, mode Mode) (uint64, error) {
	file := "memory.usage_in_bytes"
	if mode.V2() {
		file = "memory.current"
	}
	b, err := os.ReadFile(filepath.Join(dir, file))
	if errors.Is(err, fs.ErrNotExist) {
		// No memory controller in this cgroup: there is no usage to protect.
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read memory usage: %w", err)
	}
	v, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("parse %s: %w", file, err)
	}
	return v, nil
}
