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
		wantErr        bool
	}{
		{name: "cgroupfs", driver: "cgroupfs"},
		{name: "cgroupfs without systemd", driver: "cgroupfs", systemdRunning: false},
		{name: "systemd with systemd is not implemented", driver: "systemd", systemdRunning: true, wantErr: true},
		{name: "systemd without systemd", driver: "systemd", wantErr: true},
		{name: "empty", driver: "", systemdRunning: true, wantErr: true},
		{name: "unknown", driver: "Systemd", systemdRunning: true, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := validateDriver(tt.driver, tt.systemdRunning)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) && !errors.Is(err, errdefs.ErrNotImplemented) {
					t.Fatalf("validateDriver(%q, %v) = %v, want InvalidArgument or NotImplemented", tt.driver, tt.systemdRunning, err)
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
	if !strings.Contains(err.Error(), "systemd is not PID 1") {
		t.Fatalf("error %q does not explain why", err)
	}
}
