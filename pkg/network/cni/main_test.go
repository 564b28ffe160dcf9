package cni

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestMain removes the node-wide hostport chains portmap creates on first use, when they did
// not exist before the tests and nothing (e.g. an agent started meanwhile) uses them now.
func TestMain(m *testing.M) {
	hadChains := os.Geteuid() != 0 || natChainExists("CNI-HOSTPORT-DNAT")
	code := m.Run()
	if !hadChains {
		removeIdleHostportChains()
	}
	os.Exit(code)
}

func natChainExists(chain string) bool {
	return exec.Command("iptables", "-w", "-t", "nat", "-S", chain).Run() == nil
}

func removeIdleHostportChains() {
	out, err := exec.Command("iptables", "-w", "-t", "nat", "-S", "CNI-HOSTPORT-DNAT").Output()
	if err != nil || strings.Count(strings.TrimSpace(string(out)), "\n") > 0 {
		return // gone already, or holds some pod's rules
	}
	run := func(args ...string) {
		_ = exec.Command("iptables", append([]string{"-w", "-t", "nat"}, args...)...).Run()
	}
	run("-D", "PREROUTING", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT")
	run("-D", "OUTPUT", "-m", "addrtype", "--dst-type", "LOCAL", "-j", "CNI-HOSTPORT-DNAT")
	run("-D", "POSTROUTING", "-m", "comment", "--comment", "CNI portfwd requiring masquerade", "-j", "CNI-HOSTPORT-MASQ")
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-MASQ", "CNI-HOSTPORT-SETMARK"} {
		run("-F", c)
		run("-X", c)
	}
}
