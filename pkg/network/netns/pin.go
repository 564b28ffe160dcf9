package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// maxStackedPins bounds Unpin's loop over mounts stacked on one path (from a crashed earlier
// attempt that pinned twice); it only guards against looping forever.
const maxStackedPins = 16

// pin bind-mounts the namespace file src onto dst, creating dst as an empty file. A dst that
// already holds a namespace is refused rather than shadowed.
func pin(src, dst string) error {
	if IsPinned(dst) {
		return fmt.Errorf("%s already holds a namespace: %w", dst, errdefs.ErrAlreadyExists)
	}
	_, statErr := os.Lstat(dst)
	created := errors.Is(statErr, fs.ErrNotExist)
	f, err := os.OpenFile(dst, os.O_RDONLY|os.O_CREATE, 0o444)
	if err != nil {
		return fmt.Errorf("create mount point: %w", err)
	}
	f.Close()
	if err := unix.Mount(src, dst, "", unix.MS_BIND, ""); err != nil {
		if created {
			_ = os.Remove(dst)
		}
		return fmt.Errorf("bind mount %s: %w", src, err)
	}
	return nil
}

// Unpin unmounts a pinned namespace and removes its file. The namespace itself goes away once
// no process or other mount holds it. A missing or already unmounted path is not an error.
// Only nsfs mounts are unmounted, so a wrong path cannot unmount an unrelated filesystem.
func Unpin(path string) error {
	for i := 0; IsPinned(path); i++ {
		if i == maxStackedPins {
			return fmt.Errorf("unpin %s: still mounted after %d unmounts", path, i)
		}
		// MNT_DETACH: a process still entering the namespace through this path keeps its
		// reference; the mount disappears from the tree at once.
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unpin %s: unmount: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unpin %s: %w", path, err)
	}
	return nil
}

// IsPinned reports whether path is a namespace file (an nsfs bind mount when made by Create),
// for reconciling recorded pins against the kernel after a restart.
func IsPinned(path string) bool {
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}
