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

// ValidateDriver accepts "cgroupfs" always and "systemd" only when systemd is PID 1: the
// systemd driver delegates cgroup creation to systemd over D-Bus, which needs it running.
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
		return nil
	}
	return fmt.Errorf("unknown cgroup driver %q (want %q or %q): %w", driver, DriverCgroupfs, DriverSystemd, errdefs.ErrInvalidArgument)
}

func systemdBooted() bool {
	fi, err := os.Lstat(systemdRunDir)
	return err == nil && fi.IsDir()
}
