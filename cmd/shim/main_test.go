package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
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

func TestParseFlagsCgroupDriver(t *testing.T) {
	base := []string{"--id", "s1", "--dir", "/d", "--runtime-root", "/r"}
	tests := []struct {
		name    string
		args    []string
		want    string
		wantErr bool
	}{
		{name: "default", args: base, want: "cgroupfs"},
		{name: "systemd", args: append(slices.Clone(base), "--cgroup-driver", "systemd"), want: "systemd"},
		{name: "unknown", args: append(slices.Clone(base), "--cgroup-driver", "Systemd"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := parseFlags(tt.args)
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "--cgroup-driver") {
					t.Fatalf("parseFlags(%v) = %v, want an error naming --cgroup-driver", tt.args, err)
				}
				return
			}
			if err != nil || f.cgroupDriver != tt.want {
				t.Fatalf("parseFlags(%v) = %q, %v; want %q", tt.args, f.cgroupDriver, err, tt.want)
			}
		})
	}
}
