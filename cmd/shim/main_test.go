package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeRefusesMissingDir: a shim that starts after the agent removed its directory (the
// agent's start timed out and rolled back) exits instead of recreating it.
func TestServeRefusesMissingDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shims", "gone")
	f := flags{id: "gone", dir: dir, runtimeRoot: filepath.Join(t.TempDir(), "runc")}
	err := serve(f, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "gave up") {
		t.Fatalf("serve = %v, want a refusal", err)
	}
	if _, err := os.Stat(dir); err == nil {
		t.Errorf("serve recreated %s", dir)
	}
}
