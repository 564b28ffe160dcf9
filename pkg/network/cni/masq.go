package cni

import (
	"context"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/containernetworking/cni/libcni"
)

// releaseMasq removes the ipMasq rules of bridge/ptp that a DEL left: those plugins learn the
// pod's IPs from its interface at DEL, so without the netns, or without the interface (a DEL
// killed halfway, or an ADD whose DEL failed before bridge's turn and whose netns is gone
// since), they skip the masquerade teardown and leave a per-pod nat chain for good. The
// chain is found by name and the jumps to it by target, so the pod's IP (which no cache may
// hold) is not needed. The chain name and comment follow the plugins' scheme (pkg/utils
// FormatChainName); only the iptables backend, the plugins' default, is handled.
func (m *Manager) releaseMasq(ctx context.Context, list *libcni.NetworkConfigList, id string) error {
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
	var errs []error
	for _, tool := range []string{"iptables", "ip6tables"} {
		if exec.CommandContext(ctx, tool, "-w", "-t", "nat", "-S", chain).Run() != nil {
			continue // no such chain (or no such tool): nothing leaked
		}
		if err := deleteJumps(ctx, tool, chain); err != nil {
			errs = append(errs, err)
			continue
		}
		for _, op := range []string{"-F", "-X"} {
			if out, err := exec.CommandContext(ctx, tool, "-w", "-t", "nat", op, chain).CombinedOutput(); err != nil {
				errs = append(errs, fmt.Errorf("%s %s %s: %w: %s", tool, op, chain, err, strings.TrimSpace(string(out))))
				break
			}
		}
		m.log.Info("released masquerade rules the plugin's DEL left", "sandbox", id, "chain", chain)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("release masquerade rules of sandbox %s: %w", id, err)
	}
	return nil
}

// deleteJumps deletes the POSTROUTING rules that jump to chain, by their own spec.
func deleteJumps(ctx context.Context, tool, chain string) error {
	out, err := exec.CommandContext(ctx, tool, "-w", "-t", "nat", "-S", "POSTROUTING").Output()
	if err != nil {
		return fmt.Errorf("%s -S POSTROUTING: %w", tool, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "-A" || !slices.Contains(f, chain) {
			continue
		}
		// iptables -S quotes the comment; split it back into one argument.
		args, err := splitRule(line[len("-A "):])
		if err != nil {
			return err
		}
		del := append([]string{"-w", "-t", "nat", "-D"}, args...)
		if b, err := exec.CommandContext(ctx, tool, del...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s -D %s: %w: %s", tool, line, err, strings.TrimSpace(string(b)))
		}
	}
	return nil
}

// splitRule splits an iptables -S rule into arguments, honouring double quotes and \".
func splitRule(s string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(s):
			i++
			cur.WriteByte(s[i])
		case c == '"':
			inQuote, have = !inQuote, true
		case c == ' ' && !inQuote:
			if have || cur.Len() > 0 {
				args = append(args, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteByte(c)
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unbalanced quotes in iptables rule %q", s)
	}
	if have || cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args, nil
}
