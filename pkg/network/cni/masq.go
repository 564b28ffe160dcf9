package cni

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// cachedIPs are the IPs the ADD of an attachment returned, from libcni's cache.
func (m *Manager) cachedIPs(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) []net.IP {
	raw, err := m.cni.GetNetworkListCachedResult(list, rt)
	if err != nil || raw == nil {
		return nil
	}
	res, err := toResult(raw, rt.IfName)
	if err != nil {
		return nil
	}
	return res.IPs
}

// releaseMasq removes the ipMasq rules of bridge/ptp that a DEL left: those plugins learn the
// pod's IPs from its interface at DEL, so without the netns, or without the interface (a DEL
// killed halfway), they skip the masquerade teardown and leave a per-pod nat chain for good. The chain name and
// comment follow the plugins' scheme (pkg/utils FormatChainName, FormatComment); only the
// iptables backend, the plugins' default, is handled.
func (m *Manager) releaseMasq(ctx context.Context, list *libcni.NetworkConfigList, id string, ips []net.IP) error {
	var masq bool
	for _, p := range list.Plugins {
		var c struct {
			IPMasq bool `json:"ipMasq"`
		}
		if (p.Network.Type == "bridge" || p.Network.Type == "ptp") && json.Unmarshal(p.Bytes, &c) == nil && c.IPMasq {
			masq = true
		}
	}
	if !masq {
		return nil
	}
	chain := fmt.Sprintf("CNI-%x", sha512.Sum512([]byte(list.Name+id)))[:28]
	comment := fmt.Sprintf("name: %q id: %q", list.Name, id)
	var errs []error
	released := false
	for _, ip := range ips {
		tool := "iptables"
		if ip.To4() == nil {
			tool = "ip6tables"
		}
		if exec.CommandContext(ctx, tool, "-w", "-t", "nat", "-S", chain).Run() != nil {
			continue // no such chain: nothing leaked (or already removed for another IP)
		}
		released = true
		// The jump may already be gone; the chain is what must not stay.
		_ = exec.CommandContext(ctx, tool, "-w", "-t", "nat", "-D", "POSTROUTING", "-s", ip.String(), "-j", chain, "-m", "comment", "--comment", comment).Run()
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.CommandContext(ctx, tool, "-w", "-t", "nat", op, chain).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s %s: %w: %s", tool, op, chain, err, strings.TrimSpace(string(out))))
				break
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release masquerade rules of sandbox %s: %w", id, err)
	}
	if released {
		m.log.Info("released masquerade rules the plugin's DEL left", "sandbox", id, "chain", chain)
	}
	return nil
}
