package cni

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func TestPlanBridge(t *testing.T) {
	for _, tc := range []struct {
		name       string
		have, want []string
		inUse      []string // prefixes some pod holds an address in
		del, readd []string
		add        []string
	}{
		{name: "already addressed", have: []string{"10.1.0.1/24"}, want: []string{"10.1.0.1/24"}},
		{name: "fresh bridge", want: []string{"10.1.0.1/24"}, add: []string{"10.1.0.1/24"}},
		{
			name: "old range unused: readdress", have: []string{"10.88.0.1/16"}, want: []string{"10.1.0.1/24"},
			del: []string{"10.88.0.1/16"}, add: []string{"10.1.0.1/24"},
		},
		{
			name: "old range in use: new gateway first, old kept", have: []string{"10.88.0.1/16"}, want: []string{"10.1.0.1/24"},
			inUse: []string{"10.88.0.1/16"}, add: []string{"10.1.0.1/24"}, readd: []string{"10.88.0.1/16"},
		},
		{
			name: "new gateway already first", have: []string{"10.1.0.1/24", "10.88.0.1/16"}, want: []string{"10.1.0.1/24"},
			inUse: []string{"10.88.0.1/16"},
		},
		{
			name: "new gateway present but behind an old one", have: []string{"10.88.0.1/16", "10.1.0.1/24"}, want: []string{"10.1.0.1/24"},
			inUse: []string{"10.88.0.1/16"}, readd: []string{"10.88.0.1/16"},
		},
		{
			name: "last old pod gone", have: []string{"10.1.0.1/24", "10.88.0.1/16"}, want: []string{"10.1.0.1/24"},
			del: []string{"10.88.0.1/16"},
		},
		{
			name: "third cidr: one old range in use, one not", have: []string{"10.2.0.1/24", "10.1.0.1/24", "10.88.0.1/16"}, want: []string{"10.3.0.1/24"},
			inUse: []string{"10.1.0.1/24"}, del: []string{"10.2.0.1/24", "10.88.0.1/16"}, add: []string{"10.3.0.1/24"}, readd: []string{"10.1.0.1/24"},
		},
		{
			name: "an address that is no gateway is not berth's", have: []string{"10.88.0.7/16"}, want: []string{"10.1.0.1/24"},
			add: []string{"10.1.0.1/24"}, readd: []string{"10.88.0.7/16"},
		},
		{
			name: "ipv6 may hold several: old in use kept in place", have: []string{"fd88::1/64"}, want: []string{"fd01::1/64"},
			inUse: []string{"fd88::1/64"}, add: []string{"fd01::1/64"},
		},
		{
			name: "dual stack, both families change", have: []string{"10.88.0.1/16", "fd88::1/64"}, want: []string{"10.1.0.1/24", "fd01::1/64"},
			inUse: []string{"10.88.0.1/16"}, del: []string{"fd88::1/64"}, add: []string{"10.1.0.1/24", "fd01::1/64"}, readd: []string{"10.88.0.1/16"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			used := prefixes(tc.inUse...)
			plan := planBridge(prefixes(tc.have...), prefixes(tc.want...), func(p netip.Prefix) bool { return slices.Contains(used, p) })
			if !slices.Equal(plan.Del, prefixes(tc.del...)) || !slices.Equal(plan.Readd, prefixes(tc.readd...)) || !slices.Equal(plan.Add, prefixes(tc.add...)) {
				t.Fatalf("plan = %+v, want del %v readd %v add %v", plan, tc.del, tc.readd, tc.add)
			}
		})
	}
}

// fakeBridge keeps one bridge's addresses in kernel order: an added address goes last.
type fakeBridge struct {
	addrs  []netip.Prefix
	ops    []string
	delErr error // Del fails with it
}

func (f *fakeBridge) List(string) ([]netip.Prefix, error) { return slices.Clone(f.addrs), nil }

func (f *fakeBridge) Add(_ string, p netip.Prefix) error {
	f.ops = append(f.ops, "add "+p.String())
	if !slices.Contains(f.addrs, p) {
		f.addrs = append(f.addrs, p)
	}
	return nil
}

func (f *fakeBridge) Del(_ string, p netip.Prefix) error {
	f.ops = append(f.ops, "del "+p.String())
	if f.delErr != nil {
		return f.delErr
	}
	f.addrs = slices.DeleteFunc(f.addrs, func(x netip.Prefix) bool { return x == p })
	return nil
}

// The bridge the plugin will see after a CIDR change: the new gateway first while an old pod
// holds an address of the old range, the old gateway gone once its reservation is.
func TestReconcileBridgeFollowsReservations(t *testing.T) {
	dir := t.TempDir()
	m, err := New(Options{ConfDir: filepath.Join(dir, "conf"), CacheDir: filepath.Join(dir, "cache"), DefaultSubnet: "10.88.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBridge{addrs: prefixes("10.88.0.1/16")}
	m.bridge = fb
	resv := filepath.Join(m.opts.DataDir, m.opts.DefaultNetworkName)
	if err := os.MkdirAll(resv, 0o700); err != nil {
		t.Fatal(err)
	}
	old := filepath.Join(resv, "10.88.0.2")
	writeFile(t, old, "sandbox-old\neth0", 0o600)
	writeFile(t, filepath.Join(resv, "last_reserved_ip.0"), "10.88.0.2", 0o600)

	if err := m.prepareBridge(m.network()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fb.addrs, prefixes("10.88.0.1/16")) || len(fb.ops) != 0 {
		t.Fatalf("unchanged cidr: addrs %v, ops %v; want untouched", fb.addrs, fb.ops)
	}
	if err := m.SetPodCIDR("10.1.0.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := m.prepareBridge(m.network()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(fb.addrs, prefixes("10.1.0.1/24", "10.88.0.1/16")) {
		t.Fatalf("old pod running: addrs %v, want the new gateway first and the old one kept", fb.addrs)
	}
	fb.ops = nil
	if err := m.prepareBridge(m.network()); err != nil {
		t.Fatal(err)
	}
	if len(fb.ops) != 0 {
		t.Fatalf("second ADD on the new cidr changed the bridge: %v", fb.ops)
	}
	if err := os.Remove(old); err != nil {
		t.Fatal(err)
	}
	m.pruneBridge()
	if !slices.Equal(fb.addrs, prefixes("10.1.0.1/24")) {
		t.Fatalf("old pod gone: addrs %v, want the new gateway alone", fb.addrs)
	}
}

// A config file's bridge belongs to its author: berth never readdresses it.
func TestReconcileBridgeLeavesConfigFileBridges(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "conf")
	writeFile(t, filepath.Join(conf, "10-mine.conflist"), `{"cniVersion": "1.0.0", "name": "mine", "plugins": [{"type": "bridge", "bridge": "berth0"}]}`, 0o644)
	m, err := New(Options{ConfDir: conf, CacheDir: filepath.Join(dir, "cache")})
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBridge{addrs: prefixes("10.88.0.1/16")}
	m.bridge = fb
	if err := m.SetPodCIDR("10.1.0.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := m.prepareBridge(m.network()); err != nil {
		t.Fatal(err)
	}
	m.pruneBridge()
	if len(fb.ops) != 0 {
		t.Fatalf("config file network: bridge ops %v, want none", fb.ops)
	}
}

// A readdress that fails makes NetworkReady false with the reason (every ADD would fail), and
// Status retries it, so the condition clears once the bridge can be readdressed.
func TestStatusReportsFailedReaddress(t *testing.T) {
	requirePlugins(t)
	dir := t.TempDir()
	m, err := New(Options{ConfDir: filepath.Join(dir, "conf"), BinDirs: []string{DefaultBinDir}, CacheDir: filepath.Join(dir, "cache"), DefaultSubnet: "10.88.0.0/16"})
	if err != nil {
		t.Fatal(err)
	}
	fb := &fakeBridge{addrs: prefixes("10.88.0.1/16"), delErr: errors.New("injected netlink failure")}
	m.bridge = fb
	if err := m.Status(); err != nil {
		t.Fatalf("before the change: Status = %v", err)
	}
	if err := m.SetPodCIDR("10.1.0.0/24"); err != nil {
		t.Fatal(err)
	}
	if err := m.prepareBridge(m.network()); err == nil {
		t.Fatal("readdress with a failing bridge succeeded")
	}
	if err := m.Status(); err == nil || !strings.Contains(err.Error(), "injected netlink failure") {
		t.Fatalf("after a failed readdress: Status = %v, want the failure", err)
	}
	fb.delErr = nil
	if err := m.Status(); err != nil {
		t.Fatalf("once the bridge can be readdressed: Status = %v, want nil", err)
	}
	if !slices.Equal(fb.addrs, prefixes("10.1.0.1/24")) {
		t.Fatalf("bridge addresses %v after the retry, want the new gateway", fb.addrs)
	}
}
