package spec

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
)

// ProbeAppArmor reads what AppArmor can do from sysfs and securityfs under sys ("/sys" on a
// node): enabled when the module says so and securityfs shows AppArmor (without it no profile
// can be loaded or applied), with the default profile when it is loaded. The agent probes
// once at startup and passes the answer in Options.
func ProbeAppArmor(sys string) AppArmorNode {
	b, err := os.ReadFile(filepath.Join(sys, "module", "apparmor", "parameters", "enabled"))
	if err != nil || !bytes.HasPrefix(b, []byte("Y")) {
		return AppArmorNode{}
	}
	profiles, err := os.ReadFile(filepath.Join(sys, "kernel", "security", "apparmor", "profiles"))
	if err != nil {
		if _, serr := os.Stat(filepath.Join(sys, "kernel", "security", "apparmor")); serr != nil {
			return AppArmorNode{} // securityfs not mounted
		}
	}
	node := AppArmorNode{Enabled: true}
	// One loaded profile per line: "<name> (<mode>)".
	for line := range strings.Lines(string(profiles)) {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), " ("); ok && name == AppArmorDefaultProfile {
			node.Default = name
		}
	}
	return node
}

// SELinuxEnabled reports whether SELinux is active (selinuxfs is mounted); the agent passes the
// answer in Options.SELinuxEnabled.
func SELinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}
