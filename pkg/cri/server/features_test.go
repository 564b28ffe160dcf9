package server

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func TestProbeRecursiveReadOnly(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to clone mounts")
	}
	// A directory with a submount, as critest's recursive read-only spec mounts one.
	dir := t.TempDir()
	sub := filepath.Join(dir, "tmpfs")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("none", sub, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(sub, unix.MNT_DETACH) })
	before, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}

	if !probeRecursiveReadOnly(dir, slog.New(slog.NewTextHandler(io.Discard, nil))) {
		t.Fatal("recursive read-only mounts not supported on this kernel")
	}
	// The clone was detached: the probe leaves the mount table as it was, and the real
	// submount stays writable.
	after, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	if string(before) != string(after) {
		t.Errorf("mount table changed by the probe:\n%s\n---\n%s", before, after)
	}
	if err := os.WriteFile(filepath.Join(sub, "f"), nil, 0o644); err != nil {
		t.Errorf("submount no longer writable: %v", err)
	}
	if err := recursiveReadOnlyClone(filepath.Join(dir, "missing")); err == nil {
		t.Error("cloning a missing directory succeeded")
	}
}
