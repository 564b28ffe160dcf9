package cgroups

import (
	"fmt"
	"os"

	"github.com/containerd/errdefs"
)

// Cgroup drivers, as named by the kubelet's --cgroup-driver and CRI RuntimeConfig.
const (
	DriverCgroupfs = "cgroupfs"
	DriverSystemd  = "systemd"
)

// systemdRunDir exists only when systemd is PID 1 (sd_booted(3)).
const systemdRunDir = "/run/systemd/system"

// ValidateDriver accepts "cgroupfs". The systemd driver delegates cgroup creation to
// systemd over D-Bus: it is refused where systemd is not PID 1, and refused where it is
// until berth creates its scopes through systemd, rather than reporting a driver it does
// not honour (the kubelet would then place pods by systemd's rules and berth by cgroupfs').
func ValidateDriver(driver string) error {
	return validateDriver(driver, systemdBooted())
}

func validateDriver(driver string, systemdRunning bool) error {
	switch driver {
	case DriverCgroupfs:
		return nil
	case DriverSystemd:
		if !systemdRunning {
			return fmt.Errorf("cgroup driver systemd requested but systemd is not PID 1 on this node: %w", errdefs.ErrInvalidArgument)
		}
		return fmt.Errorf("cgroup driver systemd is not implemented yet: use cgroupfs (the kubelet's cgroupDriver must match): %w", errdefs.ErrNotImplemented)
	}
	return fmt.Errorf("unknown cgroup driver %q (want %q or %q): %w", driver, DriverCgroupfs, DriverSystemd, errdefs.ErrInvalidArgument)
}

func systemdBooted() bool {
	fi, err := os.Lstat(systemdRunDir)
	return err == nil && fi.IsDir()
}
