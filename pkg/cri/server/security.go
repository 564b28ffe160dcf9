package server

import (
	"context"
	"log/slog"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

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

// probeHostSecurity probes the node and, where AppArmor is enabled, loads berth's default
// profile (setUpAppArmorDefault); stateDir records which version was loaded.
func probeHostSecurity(log *slog.Logger, stateDir string) hostSecurity {
	caps, err := spec.CurrentCapabilities()
	if err != nil {
		log.Warn("cannot read the agent's capabilities; privileged containers get the default set", "err", err)
	}
	aa := spec.ProbeAppArmor("/sys")
	if aa.Enabled {
		var parser appArmorParser
		if p, ok := findAppArmorParser(); ok {
			parser = execParser{path: p}
		}
		aa = setUpAppArmorDefault(context.Background(), aa, parser, stateDir, log)
	}
	h := hostSecurity{caps: caps, apparmor: aa, selinux: spec.SELinuxEnabled()}
	log.Info("host security", "capabilities", len(caps), "apparmor", h.apparmor.Enabled,
		"apparmor_default_profile", h.apparmor.Default, "selinux", h.selinux)
	return h
}

// apply fills the host-dependent fields of the spec generator's options.
func (h hostSecurity) apply(o *spec.Options) {
	o.HostCapabilities = h.caps
	o.AppArmor = h.apparmor
	o.SELinuxEnabled = h.selinux
}

// appArmorConditionType is the Status condition saying whether RuntimeDefault can be honoured
// where AppArmor is enabled; the kubelet ignores conditions it does not know, crictl info
// shows them to the node's administrator.
const appArmorConditionType = "AppArmorRuntimeDefault"

// appArmorCondition reports the default profile where AppArmor is enabled; nil where it is not
// (RuntimeDefault then needs no profile).
func (h hostSecurity) appArmorCondition() *runtimeapi.RuntimeCondition {
	if !h.apparmor.Enabled {
		return nil
	}
	c := &runtimeapi.RuntimeCondition{Type: appArmorConditionType, Status: h.apparmor.Default != ""}
	if !c.Status {
		c.Reason = "DefaultProfileNotLoaded"
		c.Message = "apparmor profile " + spec.AppArmorDefaultProfile + " is not loaded, RuntimeDefault is refused: " + h.apparmor.NoDefault
	}
	return c
}
