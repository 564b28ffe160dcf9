package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/berth-runtime/berth/pkg/network/netns"
)

func TestPodToPod(t *testing.T) {
	e := newEnv(t, "berthtest0", "10.250.10.0/24")
	subnet := mustCIDR(t, "10.250.10.0/24")
	a, b := e.newPod("a"), e.newPod("b")
	ra, rb := e.setup(a), e.setup(b)
	for name, r := range map[string]Result{"a": ra, "b": rb} {
		if len(r.IPs) != 1 || !subnet.Contains(r.IPs[0]) {
			t.Fatalf("pod %s IPs = %v, want one in %s", name, r.IPs, subnet)
		}
		if r.Network != "berthtest" {
			t.Errorf("pod %s network = %q", name, r.Network)
		}
	}
	if ra.IPs[0].Equal(rb.IPs[0]) {
		t.Fatalf("both pods got %s", ra.IPs[0])
	}
	var inPod bool
	for _, i := range ra.Interfaces {
		inPod = inPod || (i.Name == "eth0" && i.Sandbox == a.netn)
	}
	if !inPod {
		t.Errorf("result interfaces %+v lack eth0 in %s", ra.Interfaces, a.netn)
	}
	if got := e.allocations(); got[ra.IPs[0].String()] != a.req.ID || got[rb.IPs[0].String()] != b.req.ID {
		t.Errorf("host-local reservations %v do not match results", got)
	}

	addr := serveIn(t, a.netn, net.JoinHostPort(ra.IPs[0].String(), "8080"), "hello from a")
	got, err := readFrom(b.netn, addr.String())
	if err != nil || got != "hello from a" {
		t.Fatalf("pod b -> pod a %s: %q, %v", addr, got, err)
	}
}

func TestHostPortOnLoopback(t *testing.T) {
	e := newEnv(t, "berthtest1", "10.250.11.0/24")
	hostPort := freePort(t)
	p := e.newPod("web", PortMapping{HostPort: int32(hostPort), ContainerPort: 8080, Protocol: "TCP"})
	e.setup(p)
	serveIn(t, p.netn, "0.0.0.0:8080", "hello via hostport")

	// portmap with snat sets route_localnet on the bridge: without it the kernel drops the
	// DNATed packet whose source is 127.0.0.1 as martian.
	rl, err := os.ReadFile("/proc/sys/net/ipv4/conf/" + e.bridge + "/route_localnet")
	if err != nil || strings.TrimSpace(string(rl)) != "1" {
		t.Errorf("route_localnet on %s = %q, %v; want 1", e.bridge, rl, err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", hostPort)
	got, err := readFrom("", addr)
	if err != nil || got != "hello via hostport" {
		t.Fatalf("host %s -> pod: %q, %v", addr, got, err)
	}

	e.teardown(p)
	if _, err := readFrom("", addr); err == nil {
		t.Fatalf("host port %d still reaches the pod after Teardown", hostPort)
	}
}

func TestTeardownReleasesOnce(t *testing.T) {
	e := newEnv(t, "berthtest2", "10.250.12.0/24")
	a := e.newPod("a")
	ra := e.setup(a)
	if got := e.allocations(); got[ra.IPs[0].String()] != a.req.ID {
		t.Fatalf("reservations %v lack %s for a", got, ra.IPs[0])
	}
	e.teardown(a)
	if got := e.allocations(); len(got) != 0 {
		t.Fatalf("reservations after Teardown: %v", got)
	}
	if ports := bridgePorts(t, e.bridge); len(ports) != 0 {
		t.Errorf("veths left on the bridge: %v", ports)
	}

	b := e.newPod("b")
	rb := e.setup(b)
	// A second Stop of a, with and without its netns, must not release b's IP.
	e.teardown(a)
	if err := netns.Unpin(a.netn); err != nil {
		t.Fatal(err)
	}
	e.teardown(a)
	if got := e.allocations(); len(got) != 1 || got[rb.IPs[0].String()] != b.req.ID {
		t.Fatalf("reservations after repeated Teardown of a: %v, want only b's %s", got, rb.IPs[0])
	}
}

func TestTeardownAfterNetnsGone(t *testing.T) {
	e := newEnv(t, "berthtest3", "10.250.13.0/24")
	p := e.newPod("a")
	e.setup(p)
	// The pod's netns vanished (e.g. removed before Stop after a crash): DEL still releases the IP.
	if err := netns.Unpin(p.netn); err != nil {
		t.Fatal(err)
	}
	e.teardown(p)
	if got := e.allocations(); len(got) != 0 {
		t.Fatalf("reservations after Teardown without netns: %v", got)
	}
}

// TestTeardownAfterInterfaceGone: a DEL killed after the bridge plugin deleted the pod's
// interface but before it removed the masquerade rules leaves the netns without the IP the
// plugin reads them from; the next DEL must still remove the pod's nat chain and rule.
func TestTeardownAfterInterfaceGone(t *testing.T) {
	e := newEnv(t, "berthtest7", "10.250.17.0/24")
	p := e.newPod("a")
	e.setup(p)
	err := netns.Do(p.netn, func() error {
		l, err := netlink.LinkByName("eth0")
		if err != nil {
			return err
		}
		return netlink.LinkDel(l)
	})
	if err != nil {
		t.Fatal(err)
	}
	e.teardown(p)
	for _, line := range strings.Split(iptablesSave(t), "\n") {
		if strings.Contains(line, p.req.ID) {
			t.Errorf("rule left after DEL: %s", line)
		}
	}
}

// TestTeardownAfterFailedAddAndNetnsGone: ADD fails in a plugin after bridge set up its
// masquerade rules, the DEL after it fails too (so bridge's DEL never runs), then the netns
// goes (the rollback unpins it) and nothing cached the ADD: the DEL of a later retry must
// still remove the pod's nat chain, found by its name rather than by the pod's IP.
func TestTeardownAfterFailedAddAndNetnsGone(t *testing.T) {
	bin, conf := t.TempDir(), t.TempDir()
	ctl := filepath.Join(t.TempDir(), "fail-del")
	writeFile(t, ctl, "", 0o644)
	writeFile(t, filepath.Join(bin, "berth-fake"), `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
ADD) echo '{"cniVersion":"1.1.0","code":999,"msg":"fake plugin refuses ADD"}'; exit 1 ;;
DEL) if [ -f `+ctl+` ]; then echo '{"cniVersion":"1.1.0","code":999,"msg":"fake plugin refuses DEL"}'; exit 1; fi ;;
esac
`, 0o755)
	e := newEnv(t, "berthtest8", "10.250.18.0/24", withConfDir(conf), withBinDirs(bin, pluginDir))
	writeFile(t, filepath.Join(conf, "10-test.conflist"), fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
 {"type":"bridge","bridge":"berthtest8","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","ranges":[[{"subnet":"10.250.18.0/24"}]],"dataDir":%q}},
 {"type":"berth-fake"}]}`, e.netName, e.dataDir), 0o644)
	p := e.newPod("a")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := e.m.Setup(ctx, p.req); err == nil {
		t.Fatal("Setup succeeded, want the fake plugin's ADD error")
	}
	e.recordChains()
	if err := os.Remove(ctl); err != nil {
		t.Fatal(err)
	}
	if err := netns.Unpin(p.netn); err != nil {
		t.Fatal(err)
	}
	e.teardown(p)
	for _, line := range strings.Split(iptablesSave(t), "\n") {
		if strings.Contains(line, p.req.ID) {
			t.Errorf("rule left after DEL: %s", line)
		}
	}
}

// fakePlugin writes a CNI plugin that runs the bridge normally on DEL and VERSION but fails
// (or hangs) on ADD.
func fakePlugin(t *testing.T, dir, name, onAdd string) {
	script := `#!/bin/sh
case "$CNI_COMMAND" in
ADD) ` + onAdd + ` ;;
VERSION) echo '{"cniVersion":"1.1.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
*) cat >/dev/null; exit 0 ;;
esac
`
	writeFile(t, filepath.Join(dir, name), script, 0o755)
}

// chainConf is a conflist of the bridge (allocating a veth and an IP) followed by plugin.
func chainConf(name, bridge, subnet, dataDir, plugin string) string {
	return fmt.Sprintf(`{"cniVersion":"1.1.0","name":%q,"plugins":[
 {"type":"bridge","bridge":%q,"isGateway":true,"ipam":{"type":"host-local","ranges":[[{"subnet":%q}]],"dataDir":%q}},
 {"type":%q}]}`, name, bridge, subnet, dataDir, plugin)
}

func TestFailingPluginLeavesNothing(t *testing.T) {
	tests := []struct {
		name    string
		bridge  string
		subnet  string
		onAdd   string
		timeout time.Duration
		wantErr string
		wantIs  error
	}{
		{
			name: "plugin error", bridge: "berthtest4", subnet: "10.250.14.0/24",
			onAdd:   `cat >/dev/null; echo '{"cniVersion":"1.1.0","code":999,"msg":"fake plugin refuses"}'; exit 1`,
			timeout: time.Minute, wantErr: "fake plugin refuses",
		},
		{
			name: "request times out", bridge: "berthtest5", subnet: "10.250.15.0/24",
			onAdd:   `exec sleep 60`,
			timeout: 3 * time.Second, wantErr: "killed", wantIs: context.DeadlineExceeded,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bin := t.TempDir()
			fakePlugin(t, bin, "berth-fake", tt.onAdd)
			conf := t.TempDir()
			e := newEnv(t, tt.bridge, tt.subnet, withConfDir(conf), withBinDirs(bin, pluginDir))
			writeFile(t, filepath.Join(conf, "10-test.conflist"), chainConf(e.netName, tt.bridge, tt.subnet, e.dataDir, "berth-fake"), 0o644)
			if err := e.m.Status(); err != nil {
				t.Fatalf("Status: %v", err)
			}
			p := e.newPod("a")
			ctx, cancel := context.WithTimeout(context.Background(), tt.timeout)
			defer cancel()
			_, err := e.m.Setup(ctx, p.req)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Setup = %v, want error containing %q", err, tt.wantErr)
			}
			if tt.wantIs != nil && !errors.Is(err, tt.wantIs) {
				t.Errorf("Setup = %v, want errors.Is %v", err, tt.wantIs)
			}
			if !strings.Contains(err.Error(), e.netName) || !strings.Contains(err.Error(), "berth-fake") {
				t.Errorf("error %q does not name the network and the plugin", err)
			}
			if got := e.allocations(); len(got) != 0 {
				t.Errorf("reservations after failed Setup: %v", got)
			}
			if ports := bridgePorts(t, tt.bridge); len(ports) != 0 {
				t.Errorf("veths left on the bridge after failed Setup: %v", ports)
			}
			err = netns.Do(p.netn, func() error {
				if _, err := net.InterfaceByName("eth0"); err == nil {
					t.Errorf("eth0 left in the pod netns after failed Setup")
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestGCReleasesUnknownSandboxes(t *testing.T) {
	e := newEnv(t, "berthtest6", "10.250.16.0/24")
	keep, stale := e.newPod("keep", PortMapping{HostPort: int32(freePort(t)), ContainerPort: 80}), e.newPod("stale", PortMapping{HostPort: int32(freePort(t)), ContainerPort: 80})
	rk, rs := e.setup(keep), e.setup(stale)
	// A reservation whose ADD never got cached (a crash mid-ADD): only host-local's GC sees it.
	ghost := "10.250.16.200"
	writeFile(t, filepath.Join(e.dataDir, e.netName, ghost), "ghost-sandbox\r\neth0", 0o600)

	if err := e.m.GC(context.Background(), []string{keep.req.ID}); err != nil {
		t.Fatalf("GC: %v", err)
	}
	got := e.allocations()
	if got[rk.IPs[0].String()] != keep.req.ID {
		t.Errorf("GC released the valid sandbox's %s: %v", rk.IPs[0], got)
	}
	if _, ok := got[rs.IPs[0].String()]; ok {
		t.Errorf("GC kept the stale sandbox's %s", rs.IPs[0])
	}
	if _, ok := got[ghost]; ok {
		t.Errorf("GC kept the uncached reservation %s", ghost)
	}
	if len(got) != 1 {
		t.Errorf("reservations after GC = %v, want only %s", got, rk.IPs[0])
	}
	save := iptablesSave(t)
	if strings.Contains(save, stale.req.ID) {
		t.Errorf("GC left iptables rules of the stale sandbox")
	}
	if !strings.Contains(save, keep.req.ID) {
		t.Errorf("GC removed iptables rules of the valid sandbox")
	}
}
