package server

import (
	"fmt"
	"log/slog"
	"os"

	"golang.org/x/sys/unix"
)

// probeRecursiveReadOnly reports whether read-only bind mounts can cover their submounts:
// runc's "rro" option (what the spec generator emits for Mount.recursive_read_only) needs
// mount_setattr with AT_RECURSIVE (Linux 5.12). Advertised only when it works here.
func probeRecursiveReadOnly(dir string, log *slog.Logger) bool {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Warn("recursive read-only mounts disabled: probe", "dir", dir, "err", err)
		return false
	}
	if err := recursiveReadOnlyClone(dir); err != nil {
		log.Warn("recursive read-only mounts disabled", "err", err)
		return false
	}
	return true
}

// recursiveReadOnlyClone makes a detached recursive clone of dir read-only; closing the
// clone unmounts it, so nothing is left behind.
func recursiveReadOnlyClone(dir string) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone %s: %w", dir, err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("make a clone of %s recursively read-only: %w", dir, err)
	}
	return nil
}
