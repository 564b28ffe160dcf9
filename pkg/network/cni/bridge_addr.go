package cni

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/vishvananda/netlink"
)

// Pod CIDR changes on the default bridge.
//
// The kubelet sends the node's pod CIDR (UpdateRuntimeConfig) once the controller-manager has
// allocated it, often after pods already ran on default_subnet. The bridge plugin then finds
// the old gateway on the bridge and refuses a second IPv4 address (ensureAddr, unless
// forceAddress, which would delete the old gateway under the running pods), so every later
// ADD failed. containerd only renders its conf template while the network is not ready yet and
// ignores a later CIDR, dockershim's kubenet ignored every CIDR after the first, and CRI-O
// ignored the call: none of them lets the kubelet's CIDR win. berth does, on the bridge it owns
// (the synthesized default network only; a config file's bridge is its author's):
//
//   - the new range's gateway goes on the same bridge, listed first: the bridge plugin stops at
//     the first address equal to its gateway (plugins v1.x ensureAddr), so it is content;
//   - an old gateway stays as long as host-local holds a reservation in its subnet, so pods on
//     the old range keep their IP, their default route and their neighbours (same bridge, same
//     MAC) until they are removed; once none does, the old gateway is removed (next ADD, after
//     a DEL, and at startup GC), so the bridge ends up addressed as if it had been created
//     with the new range.
//
// One bridge rather than a bridge per range: pods of both ranges keep reaching each other
// through the host (cross-range traffic is masqueraded by the old pods' ipMasq rules, as any
// traffic leaving a pod's subnet is), and nothing but addresses has to be created or removed,
// so there is no second bridge to name, record and delete. The reservations (host-local's
// files under the state dir) and the pod CIDR (persisted by the CRI layer) are the state that
// survives an agent restart; the addresses are derived from them, never recorded separately.
//
// Putting the new gateway first on IPv4 means removing the kept old ones and adding them back
// after it: the kernel appends a new primary address after the existing ones of the same
// scope. The old pods' gateway is gone for the length of two netlink calls; their ARP entry
// (the bridge's MAC does not change) carries them through.

// bridgeAddrs is the bridge's address list; netlinkBridge is the real one, tests use a fake.
type bridgeAddrs interface {
	// List returns the bridge's global addresses in kernel order; a missing bridge is empty.
	List(bridge string) ([]netip.Prefix, error)
	Add(bridge string, p netip.Prefix) error
	Del(bridge string, p netip.Prefix) error
}

// bridgePlan is what to do to the bridge before an ADD on the current subnets.
type bridgePlan struct {
	Del []netip.Prefix // removed for good: no pod holds an address in their subnet
	// Readd are old gateways still in use, removed and added back after the new gateway so
	// that the new one is listed first (IPv4 only).
	Readd []netip.Prefix
	Add   []netip.Prefix // the new gateways, added before Readd
}

func (p bridgePlan) empty() bool { return len(p.Del)+len(p.Readd)+len(p.Add) == 0 }

// planBridge decides the bridge's addresses for the gateways want (one per current subnet),
// given those it has (kernel order) and inUse, which reports whether some pod holds an
// address in a prefix's subnet. Only an old gateway (the first host of its subnet) is ever
// removed for good; any other IPv4 address ahead of the new gateway (not berth's to judge) is
// only moved behind it.
func planBridge(have, want []netip.Prefix, inUse func(netip.Prefix) bool) bridgePlan {
	var plan bridgePlan
	for _, h := range have {
		if slices.Contains(want, h) {
			continue
		}
		if !isGatewayOf(h) {
			continue
		}
		if inUse(h) {
			continue
		}
		plan.Del = append(plan.Del, h)
	}
	for _, w := range want {
		kept := keptBefore(have, w, plan.Del)
		if !slices.Contains(have, w) {
			plan.Add = append(plan.Add, w)
		} else if len(kept) == 0 {
			continue
		}
		if w.Addr().Is4() {
			for _, k := range kept {
				if !slices.Contains(plan.Readd, k) {
					plan.Readd = append(plan.Readd, k)
				}
			}
		}
	}
	return plan
}

// keptBefore lists the addresses of w's family that stay on the bridge and would be listed
// before w: those the bridge has ahead of w (all of them when w is new), less those deleted.
func keptBefore(have []netip.Prefix, w netip.Prefix, deleted []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, h := range have {
		if h == w {
			break
		}
		if h.Addr().Is4() == w.Addr().Is4() && !slices.Contains(deleted, h) {
			out = append(out, h)
		}
	}
	return out
}

// isGatewayOf reports whether p is the first host of its subnet, the gateway address the
// bridge plugin gives a host-local range by default.
func isGatewayOf(p netip.Prefix) bool {
	return p.Addr() == p.Masked().Addr().Next()
}

// gateways are the bridge addresses the bridge plugin wants for subnets (isGateway).
func gateways(subnets []*net.IPNet) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(subnets))
	for _, s := range subnets {
		a, ok := netip.AddrFromSlice(s.IP)
		if !ok {
			continue
		}
		ones, _ := s.Mask.Size()
		out = append(out, netip.PrefixFrom(a.Unmap().Next(), ones))
	}
	return out
}

// applyBridgePlan carries plan out on bridge, in an order that never leaves the old pods'
// gateway missing for longer than one delete-and-add.
func applyBridgePlan(b bridgeAddrs, bridge string, plan bridgePlan) error {
	var errs []error
	for _, p := range plan.Del {
		if err := b.Del(bridge, p); err != nil {
			errs = append(errs, fmt.Errorf("remove unused gateway %s from bridge %s: %w", p, bridge, err))
		}
	}
	for _, p := range plan.Readd {
		if err := b.Del(bridge, p); err != nil {
			return errors.Join(append(errs, fmt.Errorf("move gateway %s of bridge %s behind the new one: %w", p, bridge, err))...)
		}
	}
	for _, p := range plan.Add {
		if err := b.Add(bridge, p); err != nil {
			errs = append(errs, fmt.Errorf("add gateway %s to bridge %s: %w", p, bridge, err))
		}
	}
	for _, p := range plan.Readd {
		if err := b.Add(bridge, p); err != nil {
			errs = append(errs, fmt.Errorf("restore gateway %s of bridge %s: %w", p, bridge, err))
		}
	}
	return errors.Join(errs...)
}

// reservedIn returns a function reporting whether host-local holds a reservation (a file named
// by the IP in its network dir) inside a prefix's subnet.
func reservedIn(dir string) (func(netip.Prefix) bool, error) {
	entries, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read ip reservations %s: %w", dir, err)
	}
	var ips []netip.Addr
	for _, e := range entries {
		if a, err := netip.ParseAddr(e.Name()); err == nil {
			ips = append(ips, a)
		}
	}
	return func(p netip.Prefix) bool {
		m := p.Masked()
		return slices.ContainsFunc(ips, func(a netip.Addr) bool { return a != p.Addr() && m.Contains(a) })
	}, nil
}

// prepareBridge makes the default bridge acceptable to the bridge plugin for the current
// subnets (see the top of this file). It does nothing for a config file's network.
func (m *Manager) prepareBridge(n *network) error {
	if n.source != "" || len(n.subnets) == 0 {
		return nil
	}
	return m.reconcileBridge(gateways(n.subnets))
}

// reconcileBridge applies planBridge for want under the bridge lock.
func (m *Manager) reconcileBridge(want []netip.Prefix) error {
	m.bridgeMu.Lock()
	defer m.bridgeMu.Unlock()
	have, err := m.bridge.List(m.opts.DefaultBridge)
	if err != nil {
		m.bridgeErr = fmt.Errorf("list addresses of bridge %s: %w", m.opts.DefaultBridge, err)
		return m.bridgeErr
	}
	if len(have) == 0 {
		m.bridgeErr = nil
		return nil // no bridge yet, or a bare one: the bridge plugin addresses it
	}
	inUse, err := reservedIn(filepath.Join(m.opts.DataDir, m.opts.DefaultNetworkName))
	if err != nil {
		m.bridgeErr = err
		return err
	}
	plan := planBridge(have, want, inUse)
	if plan.empty() {
		m.bridgeErr = nil
		return nil
	}
	m.log.Info("pod cidr: readdressing bridge", "bridge", m.opts.DefaultBridge, "remove", plan.Del, "add", plan.Add, "keep", plan.Readd)
	m.bridgeErr = applyBridgePlan(m.bridge, m.opts.DefaultBridge, plan)
	return m.bridgeErr
}

// bridgeStatus is nil unless the last readdress of the default bridge failed and fails again
// now: until then every ADD would fail in the bridge plugin, so NetworkReady must say so.
func (m *Manager) bridgeStatus(n *network) error {
	m.bridgeMu.Lock()
	failed := m.bridgeErr != nil
	m.bridgeMu.Unlock()
	if !failed {
		return nil
	}
	if err := m.prepareBridge(n); err != nil {
		return fmt.Errorf("default bridge %s does not fit pod cidr: %w", m.opts.DefaultBridge, err)
	}
	return nil
}

// pruneBridge removes old gateways no pod uses any more (after a DEL, at GC). Failures are
// logged: the next ADD tries again.
func (m *Manager) pruneBridge() {
	n := m.network()
	if n.source != "" || len(n.subnets) == 0 {
		return
	}
	if err := m.reconcileBridge(gateways(n.subnets)); err != nil {
		m.log.Warn("pod cidr: prune bridge addresses", "bridge", m.opts.DefaultBridge, "error", err)
	}
}

// netlinkBridge is bridgeAddrs on the host's network namespace.
type netlinkBridge struct{}

func (netlinkBridge) List(bridge string) ([]netip.Prefix, error) {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil, nil
		}
		return nil, err
	}
	addrs, err := addrList(l)
	if err != nil {
		return nil, err
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if a.Scope != int(netlink.SCOPE_UNIVERSE) || a.IPNet == nil {
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP)
		if !ok {
			continue
		}
		ones, _ := a.Mask.Size()
		out = append(out, netip.PrefixFrom(ip.Unmap(), ones))
	}
	return out, nil
}

func (netlinkBridge) Add(bridge string, p netip.Prefix) error {
	l, a, err := linkAddr(bridge, p)
	if err != nil {
		return err
	}
	if err := netlink.AddrAdd(l, a); err != nil && !errors.Is(err, syscall.EEXIST) {
		return err
	}
	return nil
}

func (netlinkBridge) Del(bridge string, p netip.Prefix) error {
	l, a, err := linkAddr(bridge, p)
	if err != nil {
		return err
	}
	if err := netlink.AddrDel(l, a); err != nil && !errors.Is(err, syscall.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

func linkAddr(bridge string, p netip.Prefix) (netlink.Link, *netlink.Addr, error) {
	l, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil, nil, err
	}
	bits := 32
	if p.Addr().Is6() {
		bits = 128
	}
	return l, &netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), bits)}}, nil
}

// addrDumpTries bounds addrList's retries: each needs another change to the node's addresses
// during the dump, which concurrent pod setups (their veths) make likely but not endless.
const addrDumpTries = 5

// addrList lists a link's addresses. The kernel marks a dump that addresses changed during as
// interrupted (netlink.ErrDumpInterrupted: the list may be incomplete), as concurrent pod setups
// do all the time; the dump is then taken again.
func addrList(l netlink.Link) ([]netlink.Addr, error) {
	var err error
	for range addrDumpTries {
		var addrs []netlink.Addr
		addrs, err = netlink.AddrList(l, netlink.FAMILY_ALL)
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return addrs, err
		}
	}
	return nil, fmt.Errorf("addresses changed during %d dumps in a row: %w", addrDumpTries, err)
}
