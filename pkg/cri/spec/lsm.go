package spec

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// AppArmorDefaultProfile is the profile RuntimeDefault confines containers with on a node that
// enforces AppArmor. The agent loads it at startup (AppArmorDefaultText) where apparmor_parser
// is installed; where it cannot be loaded, RuntimeDefault is refused.
const AppArmorDefaultProfile = "berth-default"

// AppArmorNode is what the node's AppArmor can do, decided once at startup (ProbeAppArmor, then
// the agent's loading of the default profile).
type AppArmorNode struct {
	// Enabled: the kernel enforces AppArmor (module enabled and securityfs mounted).
	Enabled bool
	// Default is the loaded profile RuntimeDefault applies; "" when none is loaded.
	Default string
	// NoDefault says why Default is empty and how to fix it; it ends RuntimeDefault's refusal.
	NoDefault string
	// FS is AppArmor's securityfs directory (/sys/kernel/security/apparmor). Localhost
	// profiles are looked up there when a container is created: the node's administrator
	// loads them at any time, so that is not decided at startup.
	FS string
}

// AppArmor returns the AppArmor profile the container process is confined by ("" for none).
//
// Where the kernel has no AppArmor, RuntimeDefault and Unconfined mean no profile (the CRI
// allows it: there is nothing to confine with) and a Localhost profile is refused, as the
// kubelet must not believe it was applied. Where it has AppArmor, RuntimeDefault is the loaded
// default profile, or refused when none is loaded: running unconfined would claim a
// confinement that is not there. A Localhost profile must be loaded: runc would otherwise fail
// the start with a bare EINVAL long after the kubelet could have been told why. Privileged
// containers are unconfined, as the CRI says.
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
			why := node.NoDefault
			if why == "" {
				why = "load it with apparmor_parser"
			}
			return "", fmt.Errorf("apparmor runtime default: apparmor is enabled on this node but profile %q is not loaded (%s; or ask for Unconfined or a Localhost profile): %w",
				AppArmorDefaultProfile, why, errdefs.ErrFailedPrecondition)
		}
		return node.Default, nil
	case runtimeapi.SecurityProfile_Localhost:
		return appArmorLocalhost(p.GetLocalhostRef(), node)
	default:
		return "", fmt.Errorf("apparmor profile type %v: %w", p.GetProfileType(), errdefs.ErrInvalidArgument)
	}
}

// appArmorLocalhost checks that the named profile can be applied: AppArmor on, profile loaded.
func appArmorLocalhost(name string, node AppArmorNode) (string, error) {
	if !node.Enabled {
		return "", fmt.Errorf("apparmor profile %q: apparmor is not enabled on this node: %w", name, errdefs.ErrInvalidArgument)
	}
	if name == "" {
		return "", fmt.Errorf("apparmor localhost profile without a name: %w", errdefs.ErrInvalidArgument)
	}
	loaded, err := AppArmorProfileLoaded(node.FS, name)
	if err != nil {
		return "", fmt.Errorf("apparmor profile %q: %w", name, err)
	}
	if !loaded {
		return "", fmt.Errorf("apparmor profile %q is not loaded on this node (load it with apparmor_parser, or ask for RuntimeDefault or Unconfined): %w",
			name, errdefs.ErrFailedPrecondition)
	}
	return name, nil
}

// appArmorProfile folds the deprecated apparmor_profile string into a SecurityProfile. A
// Localhost reference may carry the deprecated field's "localhost/" prefix (the kubelet sends
// the bare name, critest the prefixed one; containerd and CRI-O take both): the kernel's
// profile is named without it.
func appArmorProfile(sc *runtimeapi.LinuxContainerSecurityContext) (*runtimeapi.SecurityProfile, error) {
	if p := sc.GetApparmor(); p != nil {
		if p.GetProfileType() == runtimeapi.SecurityProfile_Localhost && strings.HasPrefix(p.GetLocalhostRef(), profileLocalhost) {
			return &runtimeapi.SecurityProfile{
				ProfileType:  runtimeapi.SecurityProfile_Localhost,
				LocalhostRef: strings.TrimPrefix(p.GetLocalhostRef(), profileLocalhost),
			}, nil
		}
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
