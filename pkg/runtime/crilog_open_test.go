package runtime

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// The shim opens the CRI log as root. The agent hands it a path with every symlink resolved,
// so a symlink on the way now was planted, and the open must not follow it.
func TestOpenLogFileFollowsNoSymlink(t *testing.T) {
	tests := []struct {
		name  string
		plant func(t *testing.T, dir, outside string) string // returns the log path to open
	}{
		{name: "file is a symlink", plant: func(t *testing.T, dir, outside string) string {
			target := filepath.Join(outside, "shadow")
			if err := os.WriteFile(target, []byte("root:x:\n"), 0o600); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(target, filepath.Join(dir, "c.log")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "c.log")
		}},
		{name: "dangling symlink", plant: func(t *testing.T, dir, outside string) string {
			if err := os.Symlink(filepath.Join(outside, "new"), filepath.Join(dir, "c.log")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "c.log")
		}},
		{name: "directory is a symlink", plant: func(t *testing.T, dir, outside string) string {
			if err := os.Symlink(outside, filepath.Join(dir, "app")); err != nil {
				t.Fatal(err)
			}
			return filepath.Join(dir, "app", "0.log")
		}},
		{name: "fifo", plant: func(t *testing.T, dir, outside string) string {
			p := filepath.Join(dir, "c.log")
			if err := unix.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
			return p
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir, outside := t.TempDir(), t.TempDir()
			path := tt.plant(t, dir, outside)
			before, _ := os.ReadDir(outside)
			done := make(chan error, 1)
			go func() {
				l, err := OpenLogFile(path)
				if err == nil {
					l.Close()
				}
				done <- err
			}()
			var err error
			select {
			case err = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("OpenLogFile blocked") // a FIFO with no reader
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("OpenLogFile(%s) = %v, want InvalidArgument", path, err)
			}
			after, _ := os.ReadDir(outside)
			if len(after) != len(before) {
				t.Fatalf("open created %d entries outside the log directory", len(after)-len(before))
			}
			if b, err := os.ReadFile(filepath.Join(outside, "shadow")); err == nil && string(b) != "root:x:\n" {
				t.Fatalf("symlink target written: %q", b)
			}
		})
	}
}

// Reopen after a rotation follows the same rule: a symlink planted in place of the renamed
// file is refused and the old file stays in use.
func TestReopenLogFileFollowsNoSymlink(t *testing.T) {
	dir, outside := t.TempDir(), t.TempDir()
	path := filepath.Join(dir, "c.log")
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640 || !fi.Mode().IsRegular() {
		t.Fatalf("log file %v, %v: want a regular 0640 file", fi, err)
	}
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "x"), path); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("Reopen onto a symlink = %v, want InvalidArgument", err)
	}
	if err := l.WriteLine(Stdout, false, []byte("still here")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(outside, "x")); !os.IsNotExist(err) {
		t.Fatalf("symlink target created: %v", err)
	}
	b, _ := os.ReadFile(path + ".1")
	if len(parseCRILog(t, b)) != 1 {
		t.Fatalf("old file got %q, want the line", b)
	}
}
