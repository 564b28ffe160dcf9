package cni

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"

	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berth-runtime/berth/pkg/network/netns"
	"github.com/vishvananda/netlink"
)

const pluginDir = "/opt/cni/bin"

// sharedChains are the portmap/bridge chains shared by every pod on the node; they are left in
// place like kube-proxy's, since a running agent may use them.
var sharedChains = map[string]bool{
	"CNI-HOSTPORT-DNAT": true, "CNI-HOSTPORT-SETMARK": true, "CNI-HOSTPORT-MASQ": true,
	"CNI-FORWARD": true, "CNI-ADMIN": true,
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

// requirePlugins fails rather than skips: these tests are the point of the package.
func requirePlugins(t *testing.T) {
	t.Helper()
	for _, p := range []string{"bridge", "host-local", "portmap", "bandwidth"} {
		if _, err := os.Stat(filepath.Join(pluginDir, p)); err != nil {
			t.Fatalf("CNI plugin %s missing in %s: run hack/cni.sh", p, pluginDir)
		}
	}
	if _, err := exec.LookPath("iptables-save"); err != nil {
		t.Fatalf("iptables-save missing: run hack/deps.sh")
	}
}

// env is one test's isolated pod network: its own bridge, subnet, cache and host-local dir.
type env struct {
	t       *testing.T
	m       *Manager
	dir     string
	confDir string
	dataDir string
	bridge  string
	netName string

	mu     sync.Mutex
	ids    []string // sandbox ids this test used; iptables lines naming them are leftovers
	chains map[string]bool
}

type envOption func(*Options)

func withConfDir(dir string) envOption { return func(o *Options) { o.ConfDir = dir } }
func withBinDirs(dirs ...string) envOption {
	return func(o *Options) { o.BinDirs = dirs }
}

// newEnv builds a Manager on the default network with bridge and subnet, and registers the
// cleanup: teardown of every sandbox, bridge deletion, ip_forward restored, and a check that
// no iptables rule or per-pod chain of this test's sandboxes is left.
func newEnv(t *testing.T, bridge, subnet string, opts ...envOption) *env {
	t.Helper()
	requireRoot(t)
	requirePlugins(t)
	dir := t.TempDir()
	e := &env{
		t: t, dir: dir, bridge: bridge, netName: "berthtest",
		confDir: filepath.Join(dir, "net.d"),
		dataDir: filepath.Join(dir, "networks"),
		chains:  map[string]bool{},
	}
	o := Options{
		ConfDir:            e.confDir,
		BinDirs:            []string{pluginDir},
		CacheDir:           filepath.Join(dir, "cache"),
		DataDir:            e.dataDir,
		DefaultSubnet:      subnet,
		DefaultBridge:      bridge,
		DefaultNetworkName: e.netName,
	}
	for _, f := range opts {
		f(&o)
	}
	forward, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	t.Cleanup(func() {
		if _, err := netlink.LinkByName(bridge); err == nil {
			if err := netlink.LinkDel(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: bridge}}); err != nil {
				t.Errorf("delete bridge %s: %v", bridge, err)
			}
		}
		// The bridge plugin turns forwarding on for its gateway; a test leaves the host as it was.
		if len(forward) > 0 {
			_ = os.WriteFile("/proc/sys/net/ipv4/ip_forward", forward, 0o644)
		}
		e.checkNoIPTablesLeftovers()
	})
	m, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e.m = m
	return e
}

func randomID(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// pod is a sandbox of the test: a pinned netns and its request.
type pod struct {
	req  SetupRequest
	netn string
}

// newPod pins a fresh netns; cleanup tears the pod down (idempotent) and unpins it.
func (e *env) newPod(name string, pms ...PortMapping) *pod {
	t := e.t
	t.Helper()
	id := randomID(t)
	paths, err := netns.Create(netns.Options{Dir: filepath.Join(e.dir, "netns", id), Net: true})
	if err != nil {
		t.Fatalf("create netns: %v", err)
	}
	p := &pod{netn: paths.Net, req: SetupRequest{
		ID: id, NetNSPath: paths.Net, PodName: name, PodNamespace: "default", PodUID: "uid-" + name, PortMappings: pms,
	}}
	e.mu.Lock()
	e.ids = append(e.ids, id)
	e.mu.Unlock()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.m.Teardown(ctx, p.req); err != nil {
			t.Errorf("cleanup teardown %s: %v", name, err)
		}
		if err := netns.Unpin(paths.Net); err != nil {
			t.Errorf("unpin %s: %v", paths.Net, err)
		}
	})
	return p
}

func (e *env) setup(p *pod) Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	res, err := e.m.Setup(ctx, p.req)
	if err != nil {
		e.t.Fatalf("Setup(%s): %v", p.req.PodName, err)
	}
	e.recordChains()
	return res
}

func (e *env) teardown(p *pod) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.m.Teardown(ctx, p.req); err != nil {
		e.t.Fatalf("Teardown(%s): %v", p.req.PodName, err)
	}
}

func iptablesSave(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("iptables-save").CombinedOutput()
	if err != nil {
		t.Fatalf("iptables-save: %v: %s", err, out)
	}
	return string(out)
}

// recordChains notes the per-pod chains the rules of this test's sandboxes jump to or live
// in, so cleanup can check they were deleted, not just emptied.
func (e *env) recordChains() {
	save := iptablesSave(e.t)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, line := range strings.Split(save, "\n") {
		if !e.mentionsOurs(line) {
			continue
		}
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if (f[i] == "-A" || f[i] == "-j") && strings.HasPrefix(f[i+1], "CNI-") && !sharedChains[f[i+1]] {
				e.chains[f[i+1]] = true
			}
		}
	}
}

func (e *env) mentionsOurs(line string) bool {
	for _, id := range e.ids {
		if strings.Contains(line, id) {
			return true
		}
	}
	return false
}

func (e *env) checkNoIPTablesLeftovers() {
	t := e.t
	save := iptablesSave(t)
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, line := range strings.Split(save, "\n") {
		if e.mentionsOurs(line) {
			t.Errorf("iptables rule left behind: %s", line)
		}
		for c := range e.chains {
			if strings.HasPrefix(line, ":"+c+" ") {
				t.Errorf("iptables chain %s left behind", c)
			}
		}
	}
}

// allocations maps IP -> sandbox id of host-local's reservations of the test network.
func (e *env) allocations() map[string]string {
	e.t.Helper()
	dir := filepath.Join(e.dataDir, e.netName)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}
	}
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for _, ent := range entries {
		if net.ParseIP(ent.Name()) == nil {
			continue // lock, last_reserved_ip.*
		}
		data, err := os.ReadFile(filepath.Join(dir, ent.Name()))
		if err != nil {
			e.t.Fatal(err)
		}
		id, _, _ := strings.Cut(string(data), "\r\n")
		out[ent.Name()] = strings.TrimSpace(id)
	}
	return out
}

// serveIn listens on addr inside the netns; every connection gets greeting and is closed.
func serveIn(t *testing.T, nsPath, addr, greeting string) net.Addr {
	t.Helper()
	var ln net.Listener
	err := netns.Do(nsPath, func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	})
	if err != nil {
		t.Fatalf("listen on %s in %s: %v", addr, nsPath, err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, greeting)
			c.Close()
		}
	}()
	return ln.Addr()
}

// readFrom dials addr (from inside nsPath, or the host when "") and returns what it is sent.
func readFrom(nsPath, addr string) (string, error) {
	var c net.Conn
	dial := func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 3*time.Second)
		return err
	}
	var err error
	if nsPath == "" {
		err = dial()
	} else {
		err = netns.Do(nsPath, dial)
	}
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// bridgePorts lists the interfaces enslaved to the bridge (the host ends of pod veths).
func bridgePorts(t *testing.T, bridge string) []string {
	t.Helper()
	br, err := netlink.LinkByName(bridge)
	if err != nil {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// writeFile writes a file, creating its dir.
func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
}

func mustCIDR(t *testing.T, s string) *net.IPNet {
	t.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
