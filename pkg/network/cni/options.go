package cni

import (
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
)

// Defaults used when an Options field is empty.
const (
	DefaultConfDir     = "/etc/cni/net.d"
	DefaultBinDir      = "/opt/cni/bin"
	DefaultSubnet      = "10.88.0.0/16"
	DefaultBridge      = "berth0"
	DefaultNetworkName = "berth"
	DefaultIfName      = "eth0"
)

// Options configures a Manager.
type Options struct {
	ConfDir string   // network configs (.conflist, .conf, .json); default /etc/cni/net.d
	BinDirs []string // plugin binaries, searched in order; default /opt/cni/bin
	// CacheDir holds libcni's cached ADD results, which DEL and GC need. Required, under
	// berth's state dir (e.g. /run/berth/cni/cache), never /var/lib/cni: agents and tests
	// stay isolated from each other and from other runtimes on the node.
	CacheDir string
	// DataDir is host-local's dataDir (IP reservations) for the default network; default
	// <CacheDir>/../networks.
	DataDir string
	// DefaultSubnet is the default network's pod subnet; comma-separated for dual-stack
	// ("10.88.0.0/16,fd88::/64"). A pod CIDR set with SetPodCIDR takes precedence.
	DefaultSubnet      string
	DefaultBridge      string // Linux bridge of the default network (at most 15 bytes)
	DefaultNetworkName string // CNI network name of the default network
	IfName             string // interface name inside the pod; default eth0
	Logger             *slog.Logger
}

func (o Options) withDefaults() Options {
	if o.ConfDir == "" {
		o.ConfDir = DefaultConfDir
	}
	if len(o.BinDirs) == 0 {
		o.BinDirs = []string{DefaultBinDir}
	}
	if o.DataDir == "" && o.CacheDir != "" {
		o.DataDir = filepath.Join(filepath.Dir(filepath.Clean(o.CacheDir)), "networks")
	}
	if o.DefaultSubnet == "" {
		o.DefaultSubnet = DefaultSubnet
	}
	if o.DefaultBridge == "" {
		o.DefaultBridge = DefaultBridge
	}
	if o.DefaultNetworkName == "" {
		o.DefaultNetworkName = DefaultNetworkName
	}
	if o.IfName == "" {
		o.IfName = DefaultIfName
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	for name, dir := range map[string]string{"cache dir": o.CacheDir, "data dir": o.DataDir, "config dir": o.ConfDir} {
		if !filepath.IsAbs(dir) {
			return fmt.Errorf("cni %s %q must be an absolute path: %w", name, dir, errdefs.ErrInvalidArgument)
		}
	}
	for _, d := range o.BinDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("cni plugin dir %q must be an absolute path: %w", d, errdefs.ErrInvalidArgument)
		}
	}
	// IFNAMSIZ is 16 including the NUL.
	if len(o.DefaultBridge) > 15 || strings.ContainsAny(o.DefaultBridge, "/ \t") {
		return fmt.Errorf("bridge name %q is not a valid interface name: %w", o.DefaultBridge, errdefs.ErrInvalidArgument)
	}
	if _, err := parseCIDRs(o.DefaultSubnet); err != nil {
		return fmt.Errorf("default subnet: %w", err)
	}
	return nil
}

// parseCIDRs parses a comma-separated list of CIDRs (the kubelet's dual-stack pod CIDR form).
func parseCIDRs(s string) ([]*net.IPNet, error) {
	var out []*net.IPNet
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		_, n, err := net.ParseCIDR(part)
		if err != nil {
			return nil, fmt.Errorf("parse cidr %q: %w", part, errdefs.ErrInvalidArgument)
		}
		out = append(out, n)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no cidr in %q: %w", s, errdefs.ErrInvalidArgument)
	}
	return out, nil
}
