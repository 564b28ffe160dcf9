package spec

import (
	"slices"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultMaskedPaths hide kernel information and controls from containers (containerd's list).
var defaultMaskedPaths = []string{
	"/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats",
	"/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi",
	"/sys/firmware", "/sys/devices/virtual/powercap",
}

// defaultReadonlyPaths are the /proc parts a container may read but not write.
var defaultReadonlyPaths = []string{"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"}

// maskedAndReadonlyPaths applies the request's lists, or the defaults when it sends none (the
// protobuf cannot tell an empty list from an absent one). Privileged containers get neither.
func maskedAndReadonlyPaths(sc *runtimeapi.LinuxContainerSecurityContext) (masked, readonly []string) {
	if sc.GetPrivileged() {
		return nil, nil
	}
	masked, readonly = sc.GetMaskedPaths(), sc.GetReadonlyPaths()
	if len(masked) == 0 {
		masked = defaultMaskedPaths
	}
	if len(readonly) == 0 {
		readonly = defaultReadonlyPaths
	}
	return slices.Clone(masked), slices.Clone(readonly)
}
