package spec

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// ProbeAppArmor reads what AppArmor can do from sysfs and securityfs under sys ("/sys" on a
// node): enabled when the module says so and securityfs shows AppArmor (without it no profile
// can be loaded or applied), with the default profile when it is loaded. The agent probes
// once at startup, loads the default profile where it can, and passes the answer in Options.
func ProbeAppArmor(sys string) AppArmorNode {
	b, err := os.ReadFile(filepath.Join(sys, "module", "apparmor", "parameters", "enabled"))
	if err != nil || !bytes.HasPrefix(b, []byte("Y")) {
		return AppArmorNode{}
	}
	fs := filepath.Join(sys, "kernel", "security", "apparmor")
	if _, err := os.Stat(fs); err != nil {
		return AppArmorNode{} // securityfs not mounted
	}
	node := AppArmorNode{Enabled: true, FS: fs}
	if loaded, _ := AppArmorProfileLoaded(fs, AppArmorDefaultProfile); loaded {
		node.Default = AppArmorDefaultProfile
	}
	return node
}

// AppArmorProfileLoaded reports whether the kernel has the named profile, from the list
// securityfs keeps in fs/profiles: one loaded profile per line, "<name> (<mode>)".
func AppArmorProfileLoaded(fs, name string) (bool, error) {
	profiles, err := os.ReadFile(filepath.Join(fs, "profiles"))
	if err != nil {
		return false, fmt.Errorf("read loaded apparmor profiles: %v: %w", err, errdefs.ErrUnavailable)
	}
	for line := range strings.Lines(string(profiles)) {
		if n, _, ok := strings.Cut(strings.TrimRight(line, "\n"), " ("); ok && n == name {
			return true, nil
		}
	}
	return false, nil
}

// SELinuxEnabled reports whether SELinux is active (selinuxfs is mounted); the agent passes the
// answer in Options.SELinuxEnabled.
func SELinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}
