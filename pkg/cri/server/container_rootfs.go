package server

import (
	"fmt"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// ensureWritable refuses a container root the kernel mounted read-only. overlayfs falls back
// to a read-only mount, with only a kernel log line, when it cannot create its work directory
// (the upper filesystem is full or read-only); a container that asked for a writable root must
// not silently get a read-only one, nor fail later with an unexplained EROFS at init.
// The read-only root of readonly_rootfs is made by the runtime from the spec, never here.
func ensureWritable(path string) error {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return fmt.Errorf("statfs rootfs %s: %w", path, err)
	}
	if st.Flags&unix.ST_RDONLY != 0 {
		return fmt.Errorf("rootfs %s came up read-only: the filesystem of the writable layer is full or read-only: %w",
			path, errdefs.ErrResourceExhausted)
	}
	return nil
}
