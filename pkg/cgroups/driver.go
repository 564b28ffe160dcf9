package cgroups

import (
	"fmt"
	"os"
	"strings"

	"github.com/containerd/errdefs"
)

// Cgroup drivers, as named by the kubelet's --cgroup-driver and CRI RuntimeConfig.
const (
	DriverCgroupfs = "cgroupfs"
	DriverSystemd  = "systemd"
)

// systemdRunDir exists only when systemd is PID 1 (sd_booted(3)).
const systemdRunDir = "/run/systemd/system"

// systemdControllers are the controllers the systemd driver needs: systemd turns them on
// for the slices and scopes berth asks for, and a node without one of them would take a
// container's limits silently (systemd drops properties of absent controllers).
func systemdControllers() []string { return []string{"cpu", "memory", "pids"} }

// ValidateDriver accepts "cgroupfs" anywhere, and "systemd" where systemd is PID 1 and the
// controllers it is to manage are available. Whether systemd answers on D-Bus is checked by
// ConnectSystemd, which the systemd driver needs next.
func ValidateDriver(driver string) error {
	var missing []string
	if driver == DriverSystemd {
		for _, c := range systemdControllers() {
			if !HasController(c) {
				missing = append(missing, c)
			}
		}
	}
	return validateDriver(driver, systemdBooted(), missing)
}

func validateDriver(driver string, systemdRunning bool, missing []string) error {
	switch driver {
	case DriverCgroupfs:
		return nil
	case DriverSystemd:
		if !systemdRunning {
			return fmt.Errorf("cgroup_driver %q: systemd is not PID 1 on this node (use %q): %w", driver, DriverCgroupfs, errdefs.ErrInvalidArgument)
		}
		if len(missing) > 0 {
			return fmt.Errorf("cgroup_driver %q: controllers %s are not enabled on this node: %w", driver, strings.Join(missing, ", "), errdefs.ErrFailedPrecondition)
		}
		return nil
	}
	return fmt.Errorf("unknown cgroup_driver %q (want %q or %q): %w", driver, DriverCgroupfs, DriverSystemd, errdefs.ErrInvalidArgument)
}

func systemdBooted() bool {
	fi, err := os.Lstat(systemdRunDir)
	return err == nil && fi.IsDir()
}
