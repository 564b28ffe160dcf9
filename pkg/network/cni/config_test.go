package cni

import (
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// fakeBinDir holds executables named like the default network's plugins; Status only looks
// for them.
func fakeBinDir(t *testing.T, names ...string) string {
	dir := t.TempDir()
	for _, n := range names {
		writeFile(t, filepath.Join(dir, n), "#!/bin/sh\nexit 0\n", 0o755)
	}
	return dir
}

func newConfigManager(t *testing.T, confDir string, binDirs ...string) *Manager {
	t.Helper()
	m, err := New(Options{
		ConfDir:            confDir,
		BinDirs:            binDirs,
		CacheDir:           filepath.Join(t.TempDir(), "cache"),
		DefaultNetworkName: "berthtest",
		DefaultBridge:      "berthtest9",
		DefaultSubnet:      "10.250.99.0/24",
	})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return m
}

const goodList = `{"cniVersion":"1.0.0","name":"%s","plugins":[{"type":"bridge","bridge":"cni0","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}]}`

func TestStatusAndConfigChoice(t *testing.T) {
	tests := []struct {
		name     string
		files    map[string]string // in the conf dir; nil: the dir does not exist
		bins     []string
		wantNet  string // network in force; "" none
		wantErr  string // substring of Status's error; "" ready
		wantKind error
	}{
		{name: "no conf dir: default network", bins: []string{"bridge", "portmap", "bandwidth", "host-local"}, wantNet: "berthtest"},
		{name: "empty conf dir: default network", files: map[string]string{}, bins: []string{"bridge", "portmap", "bandwidth"}, wantNet: "berthtest"},
		{name: "default network with a plugin missing", bins: []string{"bridge", "bandwidth"}, wantNet: "berthtest",
			wantErr: `plugin "portmap" of network "berthtest" not found`, wantKind: errdefs.ErrFailedPrecondition},
		{name: "broken conflist", files: map[string]string{"10-net.conflist": `{"cniVersion":"1.0.0","name":"x","plugins":[`},
			bins: []string{"bridge"}, wantErr: "10-net.conflist: error parsing configuration list", wantKind: errdefs.ErrFailedPrecondition},
		{name: "conflist without plugins", files: map[string]string{"10-net.conflist": `{"cniVersion":"1.0.0","name":"x","plugins":[]}`},
			bins: []string{"bridge"}, wantErr: "no plugins in list", wantKind: errdefs.ErrFailedPrecondition},
		{name: "plugin without type", files: map[string]string{"10-net.conflist": `{"cniVersion":"1.0.0","name":"x","plugins":[{"bridge":"cni0"}]}`},
			bins: []string{"bridge"}, wantErr: "missing 'type'", wantKind: errdefs.ErrFailedPrecondition},
		{name: "config naming a missing plugin", files: map[string]string{"10-net.conflist": strings.NewReplacer(`"bridge","bridge"`, `"nosuch","bridge"`, "%s", "x").Replace(goodList)},
			bins: []string{"bridge"}, wantNet: "x", wantErr: `plugin "nosuch"`, wantKind: errdefs.ErrFailedPrecondition},
		{name: "first valid file in lexical order wins", files: map[string]string{
			"20-b.conflist": strings.Replace(goodList, "%s", "b", 1), "10-a.conflist": strings.Replace(goodList, "%s", "a", 1)},
			bins: []string{"bridge"}, wantNet: "a"},
		{name: "broken file skipped for a later valid one", files: map[string]string{
			"10-a.conflist": "not json", "20-b.conflist": strings.Replace(goodList, "%s", "b", 1)},
			bins: []string{"bridge"}, wantNet: "b"},
		{name: "single-plugin conf", files: map[string]string{
			"10-a.conf": `{"cniVersion":"1.0.0","name":"single","type":"bridge","ipam":{"type":"host-local","subnet":"10.1.0.0/16"}}`},
			bins: []string{"bridge"}, wantNet: "single"},
		{name: "other files ignored", files: map[string]string{"README": "x", "99-a.conflist": strings.Replace(goodList, "%s", "z", 1)},
			bins: []string{"bridge"}, wantNet: "z"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			confDir := filepath.Join(t.TempDir(), "net.d")
			if tt.files != nil {
				if err := os.MkdirAll(confDir, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for name, content := range tt.files {
				writeFile(t, filepath.Join(confDir, name), content, 0o644)
			}
			m := newConfigManager(t, confDir, fakeBinDir(t, tt.bins...))
			err := m.Status()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Status = %v, want ready", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Status = %v, want error containing %q", err, tt.wantErr)
			case tt.wantKind != nil && !errors.Is(err, tt.wantKind):
				t.Fatalf("Status = %v, want %v", err, tt.wantKind)
			}
			if got := m.NetworkName(); got != tt.wantNet {
				t.Errorf("NetworkName = %q, want %q", got, tt.wantNet)
			}
		})
	}
}

// TestConfigChangesApplyWithoutRestart edits the conf dir under a live Manager.
func TestConfigChangesApplyWithoutRestart(t *testing.T) {
	confDir := filepath.Join(t.TempDir(), "net.d")
	m := newConfigManager(t, confDir, fakeBinDir(t, "bridge", "portmap", "bandwidth"))
	file := filepath.Join(confDir, "10-net.conflist")
	steps := []struct {
		name    string
		edit    func()
		wantNet string
		wantErr string
	}{
		{name: "start with the default", edit: func() {}, wantNet: "berthtest"},
		{name: "broken config appears", edit: func() { writeFile(t, file, `{"name":`, 0o644) }, wantErr: "unexpected end of JSON input"},
		{name: "config fixed", edit: func() { writeFile(t, file, strings.Replace(goodList, "%s", "fixed", 1), 0o644) }, wantNet: "fixed"},
		{name: "config removed", edit: func() { os.Remove(file) }, wantNet: "berthtest"},
	}
	for _, s := range steps {
		s.edit()
		err := m.Status()
		if (s.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), s.wantErr)) {
			t.Fatalf("%s: Status = %v, want error %q", s.name, err, s.wantErr)
		}
		if got := m.NetworkName(); got != s.wantNet {
			t.Fatalf("%s: NetworkName = %q, want %q", s.name, got, s.wantNet)
		}
	}
}

func TestSetPodCIDR(t *testing.T) {
	m := newConfigManager(t, filepath.Join(t.TempDir(), "none"), fakeBinDir(t))
	if err := m.SetPodCIDR("10.244.1.0/24,fd00:1::/64"); err != nil {
		t.Fatal(err)
	}
	var bridge struct {
		IPAM struct {
			Ranges  [][]map[string]string `json:"ranges"`
			Routes  []map[string]string   `json:"routes"`
			DataDir string                `json:"dataDir"`
		} `json:"ipam"`
	}
	list := m.network().list
	if err := json.Unmarshal(list.Plugins[0].Bytes, &bridge); err != nil {
		t.Fatal(err)
	}
	wantRanges := [][]map[string]string{{{"subnet": "10.244.1.0/24"}}, {{"subnet": "fd00:1::/64"}}}
	if !reflect.DeepEqual(bridge.IPAM.Ranges, wantRanges) {
		t.Errorf("ranges = %v, want %v", bridge.IPAM.Ranges, wantRanges)
	}
	wantRoutes := []map[string]string{{"dst": "0.0.0.0/0"}, {"dst": "::/0"}}
	if !reflect.DeepEqual(bridge.IPAM.Routes, wantRoutes) {
		t.Errorf("routes = %v, want %v", bridge.IPAM.Routes, wantRoutes)
	}
	if !strings.HasPrefix(bridge.IPAM.DataDir, filepath.Dir(m.opts.CacheDir)) {
		t.Errorf("host-local dataDir %q is not under the manager's state dir", bridge.IPAM.DataDir)
	}
	rt := m.runtimeConf(SetupRequest{ID: "x"})
	if got := rt.CapabilityArgs["ipRanges"]; !reflect.DeepEqual(got, wantRanges) {
		t.Errorf("ipRanges capability = %v, want %v", got, wantRanges)
	}
	if err := m.SetPodCIDR("10.244.1.0"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("SetPodCIDR(no mask) = %v, want InvalidArgument", err)
	}
	if err := m.SetPodCIDR(""); err != nil || m.network().list.Plugins[0].Network.IPAM.Type != "host-local" {
		t.Fatalf("SetPodCIDR(\"\") = %v", err)
	}
	if err := json.Unmarshal(m.network().list.Plugins[0].Bytes, &bridge); err != nil || bridge.IPAM.Ranges[0][0]["subnet"] != "10.250.99.0/24" {
		t.Errorf("after clearing the pod cidr, ranges = %v, want the default subnet", bridge.IPAM.Ranges)
	}
}

func TestNewRejectsBadOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "no cache dir", opts: Options{}},
		{name: "relative cache dir", opts: Options{CacheDir: "cache"}},
		{name: "relative bin dir", opts: Options{CacheDir: "/tmp/x/cache", BinDirs: []string{"bin"}}},
		{name: "bad subnet", opts: Options{CacheDir: "/tmp/x/cache", DefaultSubnet: "10.0.0.0/33"}},
		{name: "bridge name too long", opts: Options{CacheDir: "/tmp/x/cache", DefaultBridge: "abcdefghijklmnop"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := New(tt.opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("New(%+v) = %v, want InvalidArgument", tt.opts, err)
			}
		})
	}
}

func TestRuntimeConf(t *testing.T) {
	m := newConfigManager(t, filepath.Join(t.TempDir(), "none"), fakeBinDir(t))
	rt := m.runtimeConf(SetupRequest{
		ID: "sb1", NetNSPath: "/run/ns", PodName: "web", PodNamespace: "prod", PodUID: "u-1",
		PortMappings: []PortMapping{
			{HostPort: 8080, ContainerPort: 80, Protocol: "TCP"},
			{ContainerPort: 9090}, // no hostPort: not published
			{HostPort: 5353, ContainerPort: 53, Protocol: "UDP", HostIP: "127.0.0.1"},
		},
		Bandwidth: &Bandwidth{IngressRate: 1e6, IngressBurst: 2e6},
		DNS:       &DNS{Servers: []string{"10.0.0.10"}},
	})
	wantArgs := [][2]string{{"IgnoreUnknown", "1"}, {"K8S_POD_NAMESPACE", "prod"}, {"K8S_POD_NAME", "web"},
		{"K8S_POD_INFRA_CONTAINER_ID", "sb1"}, {"K8S_POD_UID", "u-1"}}
	if !reflect.DeepEqual(rt.Args, wantArgs) {
		t.Errorf("Args = %v, want %v", rt.Args, wantArgs)
	}
	if rt.ContainerID != "sb1" || rt.NetNS != "/run/ns" || rt.IfName != "eth0" {
		t.Errorf("identity = %q %q %q", rt.ContainerID, rt.NetNS, rt.IfName)
	}
	wantPM := []map[string]any{
		{"hostPort": int32(8080), "containerPort": int32(80), "protocol": "tcp"},
		{"hostPort": int32(5353), "containerPort": int32(53), "protocol": "udp", "hostIP": "127.0.0.1"},
	}
	if got := rt.CapabilityArgs["portMappings"]; !reflect.DeepEqual(got, wantPM) {
		t.Errorf("portMappings = %#v, want %#v", got, wantPM)
	}
	if bw, ok := rt.CapabilityArgs["bandwidth"].(map[string]uint64); !ok || bw["ingressRate"] != 1e6 || bw["ingressBurst"] != 2e6 {
		t.Errorf("bandwidth = %#v", rt.CapabilityArgs["bandwidth"])
	}
	if _, ok := rt.CapabilityArgs["dns"]; !ok {
		t.Errorf("dns capability missing")
	}
	if _, ok := rt.CapabilityArgs["ipRanges"]; ok {
		t.Errorf("ipRanges passed without a pod cidr")
	}
	if rt := m.runtimeConf(SetupRequest{ID: "sb2"}); len(rt.CapabilityArgs) != 0 {
		t.Errorf("capability args for a plain pod = %v, want none", rt.CapabilityArgs)
	}
}

func TestSetupRequestValidate(t *testing.T) {
	ok := SetupRequest{ID: "a", NetNSPath: "/run/ns"}
	tests := []struct {
		name string
		mod  func(*SetupRequest)
		ok   bool
	}{
		{name: "valid", mod: func(*SetupRequest) {}, ok: true},
		{name: "no id", mod: func(r *SetupRequest) { r.ID = "" }},
		{name: "no netns", mod: func(r *SetupRequest) { r.NetNSPath = "" }},
		{name: "host port too big", mod: func(r *SetupRequest) { r.PortMappings = []PortMapping{{HostPort: 70000, ContainerPort: 80}} }},
		{name: "no container port", mod: func(r *SetupRequest) { r.PortMappings = []PortMapping{{HostPort: 80}} }},
		{name: "bad host ip", mod: func(r *SetupRequest) { r.PortMappings = []PortMapping{{HostPort: 80, ContainerPort: 80, HostIP: "x"}} }},
		{name: "bad protocol", mod: func(r *SetupRequest) {
			r.PortMappings = []PortMapping{{HostPort: 80, ContainerPort: 80, Protocol: "icmp"}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mod(&r)
			err := r.validate()
			if tt.ok != (err == nil) || (err != nil && !errors.Is(err, errdefs.ErrInvalidArgument)) {
				t.Fatalf("validate = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

func TestToResult(t *testing.T) {
	idx := func(i int) *int { return &i }
	ipc := func(cidr string, iface *int) *current.IPConfig {
		ip, n, _ := net.ParseCIDR(cidr)
		n.IP = ip
		return &current.IPConfig{Address: *n, Interface: iface}
	}
	ifaces := []*current.Interface{{Name: "berth0"}, {Name: "veth1"}, {Name: "eth0", Sandbox: "/run/ns"}}
	tests := []struct {
		name    string
		res     *current.Result
		want    []string
		wantErr bool
	}{
		{name: "v4 first even when listed second", res: &current.Result{CNIVersion: "1.0.0", Interfaces: ifaces,
			IPs: []*current.IPConfig{ipc("fd00::5/64", idx(2)), ipc("10.0.0.5/24", idx(2))}}, want: []string{"10.0.0.5", "fd00::5"}},
		{name: "host-side addresses skipped", res: &current.Result{CNIVersion: "1.0.0", Interfaces: ifaces,
			IPs: []*current.IPConfig{ipc("10.0.0.1/24", idx(0)), ipc("10.0.0.7/24", idx(2))}}, want: []string{"10.0.0.7"}},
		{name: "no interface index kept", res: &current.Result{CNIVersion: "1.0.0",
			IPs: []*current.IPConfig{ipc("10.0.0.8/24", nil)}}, want: []string{"10.0.0.8"}},
		{name: "out of range index skipped", res: &current.Result{CNIVersion: "1.0.0", Interfaces: ifaces,
			IPs: []*current.IPConfig{ipc("10.0.0.9/24", idx(7))}}, wantErr: true},
		{name: "no IPs", res: &current.Result{CNIVersion: "1.0.0", Interfaces: ifaces}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var raw types.Result = tt.res
			got, err := toResult(raw, "eth0")
			if tt.wantErr {
				if err == nil {
					t.Fatalf("toResult = %v, want error", got.IPs)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var ips []string
			for _, ip := range got.IPs {
				ips = append(ips, ip.String())
			}
			if !reflect.DeepEqual(ips, tt.want) {
				t.Errorf("IPs = %v, want %v", ips, tt.want)
			}
		})
	}
}
