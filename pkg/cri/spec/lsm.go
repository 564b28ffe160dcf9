package spec

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// AppArmorDefaultProfile is the profile RuntimeDefault confines containers with on a node that
// enforces AppArmor. berth does not load it (that takes apparmor_parser and a policy the node's
// administrator owns): it is applied when it is loaded, and RuntimeDefault is refused when not.
const AppArmorDefaultProfile = "berth-default"

// AppArmorNode is what the node's AppArmor can do, decided once at startup (ProbeAppArmor).
type AppArmorNode struct {
	// Enabled: the kernel enforces AppArmor (module enabled and securityfs mounted).
	Enabled bool
	// Default is the loaded profile RuntimeDefault applies; "" when none is loaded.
	Default string
}

// AppArmor returns the AppArmor profile the container process is confined by ("" for none).
//
// Where the kernel has no AppArmor, RuntimeDefault and Unconfined mean no profile (the CRI
// allows it: there is nothing to confine with) and a Localhost profile is refused, as the
// kubelet must not believe it was applied. Where it has AppArmor, RuntimeDefault is the loaded
// default profile, or refused when none is loaded: running unconfined would claim a
// confinement that is not there. Privileged containers are unconfined, as the CRI says.
func AppArmor(sc *runtimeapi.LinuxContainerSecurityContext, node AppArmorNode) (string, error) {
	p, err := appArmorProfile(sc)
	if err != nil || sc.GetPrivileged() {
		return "", err
	}
	switch p.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return "", nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		if !node.Enabled {
			return "", nil
		}
		if node.Default == "" {
			return "", fmt.Errorf("apparmor runtime default: apparmor is enabled on this node but profile %q is not loaded (load it with apparmor_parser, or ask for Unconfined or a Localhost profile): %w",
				AppArmorDefaultProfile, errdefs.ErrFailedPrecondition)
		}
		return node.Default, nil
	case runtimeapi.SecurityProfile_Localhost:
		if !node.Enabled {
			return "", fmt.Errorf("apparmor profile %q: apparmor is not enabled on this node: %w", p.GetLocalhostRef(), errdefs.ErrInvalidArgument)
		}
		if p.GetLocalhostRef() == "" {
			return "", fmt.Errorf("apparmor localhost profile without a name: %w", errdefs.ErrInvalidArgument)
		}
		return p.GetLocalhostRef(), nil
	default:
		return "", fmt.Errorf("apparmor profile type %v: %w", p.GetProfileType(), errdefs.ErrInvalidArgument)
	}
}

// appArmorProfile folds the deprecated apparmor_profile string into a SecurityProfile.
func appArmorProfile(sc *runtimeapi.LinuxContainerSecurityContext) (*runtimeapi.SecurityProfile, error) {
	if p := sc.GetApparmor(); p != nil {
		return p, nil
	}
	switch p := sc.GetApparmorProfile(); {
	case p == "" || p == profileRuntimeDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case p == profileUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	case strings.HasPrefix(p, profileLocalhost):
		return &runtimeapi.SecurityProfile{
			ProfileType:  runtimeapi.SecurityProfile_Localhost,
			LocalhostRef: strings.TrimPrefix(p, profileLocalhost),
		}, nil
	default:
		return nil, fmt.Errorf("apparmor profile %q: want %q, %q or %q<name>: %w",
			p, profileRuntimeDefault, profileUnconfined, profileLocalhost, errdefs.ErrInvalidArgument)
	}
}

// SELinux checks the container's SELinux options. berth does not label processes or files: with
// SELinux off in the kernel the options mean nothing and are accepted (as containerd does, whose
// labeller turns into a no-op); with SELinux on, accepting them would claim a confinement that
// is not applied, so a request carrying options is refused.
func SELinux(sc *runtimeapi.LinuxContainerSecurityContext, enabled bool) error {
	o := sc.GetSelinuxOptions()
	if !enabled || sc.GetPrivileged() || o == nil {
		return nil
	}
	if o.GetUser() == "" && o.GetRole() == "" && o.GetType() == "" && o.GetLevel() == "" {
		return nil
	}
	return fmt.Errorf("selinux options %q: berth does not apply selinux labels and selinux is enabled on this node: %w",
		strings.Join([]string{o.GetUser(), o.GetRole(), o.GetType(), o.GetLevel()}, ":"), errdefs.ErrNotImplemented)
}
