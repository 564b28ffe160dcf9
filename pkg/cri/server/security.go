package server

import (
	"log/slog"

	"github.com/berth-runtime/berth/pkg/cri/spec"
)

// hostSecurity is what this node can give containers, probed once at start:
// the agent's own capabilities bound what "privileged" and "add ALL" can grant
// (root here lacks CAP_SYS_RESOURCE, and asking for it fails the start).
type hostSecurity struct {
	caps     []string
	apparmor spec.AppArmorNode
	selinux  bool
}

func probeHostSecurity(log *slog.Logger) hostSecurity {
	caps, err := spec.CurrentCapabilities()
	if err != nil {
		log.Warn("cannot read the agent's capabilities; privileged containers get the default set", "err", err)
	}
	h := hostSecurity{caps: caps, apparmor: spec.ProbeAppArmor("/sys"), selinux: spec.SELinuxEnabled()}
	log.Info("host security", "capabilities", len(caps), "apparmor", h.apparmor.Enabled,
		"apparmor_default_profile", h.apparmor.Default, "selinux", h.selinux)
	if h.apparmor.Enabled && h.apparmor.Default == "" {
		log.Warn("apparmor is enabled but its runtime default profile is not loaded: containers asking for RuntimeDefault will be refused",
			"profile", spec.AppArmorDefaultProfile)
	}
	return h
}

// apply fills the host-dependent fields of the spec generator's options.
func (h hostSecurity) apply(o *spec.Options) {
	o.HostCapabilities = h.caps
	o.AppArmorEnabled = h.apparmor.Enabled
	o.AppArmorDefault = h.apparmor.Default
	o.SELinuxEnabled = h.selinux
}
