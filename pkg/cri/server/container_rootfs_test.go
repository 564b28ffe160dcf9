package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// overlayfs mounts read-only when its upper filesystem has no room for the work directory;
// ensureWritable must catch that, and pass a writable overlay.
func TestEnsureWritableCatchesReadOnlyOverlay(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount")
	}
	for _, full := range []bool{false, true} {
		t.Run(fmt.Sprintf("upper full %v", full), func(t *testing.T) {
			dir := t.TempDir()
			upperFS, lower, rootfs := filepath.Join(dir, "upperfs"), filepath.Join(dir, "lower"), filepath.Join(dir, "rootfs")
			for _, d := range []string{upperFS, lower, rootfs} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			// A tmpfs with few inodes: once they are used up, overlay cannot make work/work.
			if err := unix.Mount("tmpfs", upperFS, "tmpfs", 0, "nr_inodes=64"); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(upperFS, unix.MNT_DETACH) })
			upper, work := filepath.Join(upperFS, "upper"), filepath.Join(upperFS, "work")
			for _, d := range []string{upper, work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if full {
				for i := 0; ; i++ {
					f, err := os.Create(filepath.Join(upperFS, fmt.Sprint("fill", i)))
					if errors.Is(err, syscall.ENOSPC) {
						break
					}
					if err != nil {
						t.Fatal(err)
					}
					f.Close()
				}
			}
			data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", lower, upper, work)
			if err := unix.Mount("overlay", rootfs, "overlay", 0, data); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = unix.Unmount(rootfs, unix.MNT_DETACH) })
			err := ensureWritable(rootfs)
			if full && !errdefs.IsResourceExhausted(err) {
				t.Errorf("overlay over a full upper: %v, want ResourceExhausted", err)
			}
			if !full && err != nil {
				t.Errorf("writable overlay refused: %v", err)
			}
		})
	}
}
