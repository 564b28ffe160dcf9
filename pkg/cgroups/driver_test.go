package cgroups

import (
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestValidateDriverRules(t *testing.T) {
	tests := []struct {
		name           string
		driver         string
		systemdRunning bool
		missing        []string
		wantErr        error
		wantText       string
	}{
		{name: "cgroupfs", driver: "cgroupfs"},
		{name: "cgroupfs without systemd", driver: "cgroupfs", systemdRunning: false},
		{name: "cgroupfs ignores controllers", driver: "cgroupfs", missing: []string{"memory"}},
		{name: "systemd with systemd", driver: "systemd", systemdRunning: true},
		{name: "systemd without systemd", driver: "systemd", wantErr: errdefs.ErrInvalidArgument, wantText: "not PID 1"},
		{name: "systemd without memory", driver: "systemd", systemdRunning: true, missing: []string{"memory", "pids"},
			wantErr: errdefs.ErrFailedPrecondition, wantText: "controllers memory, pids are not enabled"},
		{name: "empty", driver: "", systemdRunning: true, wantErr: errdefs.ErrInvalidArgument, wantText: "unknown cgroup_driver"},
		{name: "unknown", driver: "Systemd", systemdRunning: true, wantErr: errdefs.ErrInvalidArgument, wantText: "unknown cgroup_driver"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateDriver(tt.driver, tt.systemdRunning, tt.missing)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantText) || !strings.Contains(err.Error(), "cgroup_driver") {
					t.Fatalf("validateDriver(%q, %v, %v) = %v, want %v naming cgroup_driver and %q", tt.driver, tt.systemdRunning, tt.missing, err, tt.wantErr, tt.wantText)
				}
				return
			}
			if err != nil {
				t.Fatalf("validateDriver(%q, %v) = %v", tt.driver, tt.systemdRunning, err)
			}
		})
	}
}

// TestValidateDriverOnThisNode checks the real PID 1 probe.
func TestValidateDriverOnThisNode(t *testing.T) {
	if err := ValidateDriver("cgroupfs"); err != nil {
		t.Fatalf("ValidateDriver(cgroupfs) = %v", err)
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd is PID 1 here")
	}
	err := ValidateDriver("systemd")
	if !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Fatalf("ValidateDriver(systemd) = %v, want InvalidArgument", err)
	}
	if !strings.Contains(err.Error(), "systemd is not PID 1") || !strings.Contains(err.Error(), "cgroup_driver") {
		t.Fatalf("error %q does not explain why", err)
	}
}
