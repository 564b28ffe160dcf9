package spec

import (
	"fmt"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// defaultCapabilities is the set containerd and Docker give unprivileged containers.
var defaultCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW",
	"CAP_SETGID", "CAP_SETUID", "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE",
	"CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
}

// allCapabilities lists every capability Linux knows of (up to 6.x), in the kernel's numbering
// (index = capability number; CurrentCapabilities relies on it). Capabilities the running
// kernel lacks are skipped by runc with a warning, so one static list serves every kernel.
var allCapabilities = []string{
	"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
	"CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
	"CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
	"CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
	"CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
	"CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
	"CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN",
	"CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON",
	"CAP_BPF", "CAP_CHECKPOINT_RESTORE",
}

// Capabilities computes the process capabilities. "All capabilities" (privileged, add ALL) are
// those of host, the set the agent itself holds (CurrentCapabilities): runc cannot grant more,
// and on a node whose root lacks one (e.g. CAP_SYS_RESOURCE) asking for it fails every start.
// A nil host means every capability Linux knows. As in containerd, "ALL" in add or drop is
// applied first so that individual names still refine it (add ALL, drop X = all but X; drop
// ALL, add X = only X); individual drops win over individual adds. Names are accepted with or
// without the CAP_ prefix, in any case. Inheritable stays empty (CVE-2022-24769); ambient
// capabilities are also put in the inheritable and other sets, which the kernel requires.
func Capabilities(sc *runtimeapi.LinuxContainerSecurityContext, host []string) (*specs.LinuxCapabilities, error) {
	if host == nil {
		host = allCapabilities
	}
	if sc.GetPrivileged() {
		return capSets(slices.Clone(host), nil), nil
	}
	c := sc.GetCapabilities()
	caps := slices.Clone(defaultCapabilities)
	if slices.ContainsFunc(c.GetAddCapabilities(), isAll) {
		caps = slices.Clone(host)
	}
	if slices.ContainsFunc(c.GetDropCapabilities(), isAll) {
		caps = nil
	}
	add, err := capNames(c.GetAddCapabilities())
	if err != nil {
		return nil, err
	}
	drop, err := capNames(c.GetDropCapabilities())
	if err != nil {
		return nil, err
	}
	ambient, err := capNames(c.GetAddAmbientCapabilities())
	if err != nil {
		return nil, err
	}
	for _, a := range append(add, ambient...) {
		if !slices.Contains(caps, a) {
			caps = append(caps, a)
		}
	}
	caps = slices.DeleteFunc(caps, func(c string) bool { return slices.Contains(drop, c) })
	ambient = slices.DeleteFunc(ambient, func(c string) bool { return slices.Contains(drop, c) })
	return capSets(caps, ambient), nil
}

func capSets(caps, ambient []string) *specs.LinuxCapabilities {
	return &specs.LinuxCapabilities{
		Bounding:    caps,
		Effective:   slices.Clone(caps),
		Permitted:   slices.Clone(caps),
		Inheritable: slices.Clone(ambient),
		Ambient:     ambient,
	}
}

func isAll(name string) bool { return strings.EqualFold(name, "ALL") }

// capNames normalises names and rejects unknown ones; "ALL" is handled by the caller.
func capNames(names []string) ([]string, error) {
	var out []string
	for _, n := range names {
		if isAll(n) {
			continue
		}
		c := strings.ToUpper(n)
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		if !slices.Contains(allCapabilities, c) {
			return nil, fmt.Errorf("unknown capability %q: %w", n, errdefs.ErrInvalidArgument)
		}
		out = append(out, c)
	}
	return out, nil
}
