package spec

import (
	"bytes"
	"os"
)

// AppArmorEnabled reports whether the running kernel enforces AppArmor; the agent passes the
// answer in Options.AppArmorEnabled.
func AppArmorEnabled() bool {
	b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return err == nil && bytes.HasPrefix(b, []byte("Y"))
}

// SELinuxEnabled reports whether SELinux is active (selinuxfs is mounted); the agent passes the
// answer in Options.SELinuxEnabled.
func SELinuxEnabled() bool {
	_, err := os.Stat("/sys/fs/selinux/enforce")
	return err == nil
}
