package spec

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
)

// appArmorDefaultRules is the body of berth's RuntimeDefault profile. It lets a container do
// what an ordinary process does (files, network, the capabilities its spec grants) and guards
// what the container's own namespaces do not: the host kernel's knobs under /proc and /sys,
// mounting over the paths the runtime masked (a container given CAP_SYS_ADMIN could otherwise
// unmask them), and tracing or signalling processes confined by other profiles. The runtime
// sets sysctls and mounts before the container process execs into the profile, so denying
// them here takes nothing a pod asked for in its spec.
const appArmorDefaultRules = `  file,
  network,
  capability,

  # Processes of berth containers signal and trace one another (a pod's containers may share a
  # PID namespace); the agent and the shim, which run unconfined, stop them.
  signal (send, receive) peer=` + AppArmorDefaultProfile + `,
  signal (receive) peer=unconfined,
  ptrace (trace, read, tracedby, readby) peer=` + AppArmorDefaultProfile + `,

  # No mount changes: mounting over a masked or read-only path would undo the runtime's masks.
  deny mount,
  deny remount,
  deny umount,
  deny pivot_root,

  # Host kernel settings: namespaced sysctls are set by the runtime before the container starts.
  deny /proc/sys/** wl,
  deny /proc/sysrq-trigger rwlkx,
  deny /proc/kcore rwlkx,
  deny /proc/kmsg rwlkx,
  deny /proc/mem rwlkx,
  deny /proc/kmem rwlkx,
  deny /proc/acpi/** rwlkx,
  deny /proc/scsi/** wl,
  deny /proc/bus/** wl,
  deny /proc/irq/** wl,
  deny /proc/timer_list rwlkx,
  deny /proc/sched_debug rwlkx,

  # Firmware, kernel and LSM controls, and device settings of the host.
  deny /sys/firmware/** rwlkx,
  deny /sys/kernel/security/** rwlkx,
  deny /sys/kernel/debug/** rwlkx,
  deny /sys/kernel/** wl,
  deny /sys/module/** wl,
  deny /sys/devices/** wl,
  deny /sys/class/** wl,
  deny /sys/bus/** wl,
  deny /sys/power/** wl,
`

// AppArmorDefaultText is the source of berth's RuntimeDefault profile, for apparmor_parser,
// and its version: a hash of the rules, also written into the text so that an administrator
// reading the loaded policy's source can tell which berth wrote it. The agent reloads the
// profile when the version differs from the one it last loaded.
func AppArmorDefaultText() (text []byte, version string) {
	sum := sha256.Sum256([]byte(appArmorDefaultRules))
	version = hex.EncodeToString(sum[:8])
	// attach_disconnected: paths of files opened before a pivot_root (the runtime's) or on
	// detached mounts resolve instead of being denied; mediate_deleted: deleted but still
	// open files are checked like others instead of denied.
	text = fmt.Appendf(nil, "# berth RuntimeDefault profile, version %s. Written by the berth agent at startup; do not edit.\n"+
		"profile %s flags=(attach_disconnected,mediate_deleted) {\n%s}\n",
		version, AppArmorDefaultProfile, appArmorDefaultRules)
	return text, version
}
