package cni

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// confExtensions are the config file types the kubelet and containerd read.
var confExtensions = []string{".conflist", ".conf", ".json"}

// network is the pod network in force: a parsed config list, or why there is none.
type network struct {
	list   *libcni.NetworkConfigList
	source string // config file, or "" for the synthesized default
	// subnets of the synthesized default network, whose bridge berth readdresses.
	subnets []*net.IPNet
	err     error // set when list is nil
}

// network returns the pod network, reloading it when the config dir or pod CIDR changed
// since the last load. Stat-ing a handful of files is cheap enough to do on every call, and
// it makes config changes apply without an inotify watcher.
func (m *Manager) network() *network {
	m.mu.Lock()
	defer m.mu.Unlock()
	stamp := m.confStamp()
	if m.current != nil && stamp == m.stamp {
		return m.current
	}
	m.current = m.load()
	m.stamp = stamp
	if m.current.err != nil {
		m.log.Warn("no valid cni network config", "dir", m.opts.ConfDir, "error", m.current.err)
	} else {
		src := m.current.source
		if src == "" {
			src = "default"
		}
		m.log.Info("cni network config loaded", "network", m.current.list.Name, "source", src)
	}
	return m.current
}

// confStamp summarises what the network depends on: every config file's name, size and
// mtime, and the pod CIDR.
func (m *Manager) confStamp() string {
	var b strings.Builder
	fmt.Fprintf(&b, "cidr=%s\n", m.podCIDR)
	entries, err := os.ReadDir(m.opts.ConfDir)
	if err != nil {
		fmt.Fprintf(&b, "err=%v\n", err)
		return b.String()
	}
	for _, e := range entries {
		if !slices.Contains(confExtensions, filepath.Ext(e.Name())) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		fmt.Fprintf(&b, "%s %d %d %v\n", e.Name(), info.Size(), info.ModTime().UnixNano(), info.IsDir())
	}
	return b.String()
}

// load picks the first valid config file in lexical order. An absent or empty dir gives the
// default network; a dir whose files are all invalid gives none, since the operator meant a
// different network than the default.
func (m *Manager) load() *network {
	files, err := libcni.ConfFiles(m.opts.ConfDir, confExtensions)
	if err != nil {
		return &network{err: fmt.Errorf("read cni config dir %s: %w", m.opts.ConfDir, err)}
	}
	slices.Sort(files)
	if len(files) == 0 {
		return m.loadDefault()
	}
	var errs []error
	for _, f := range files {
		list, err := loadFile(f)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f, err))
			continue
		}
		return &network{list: list, source: f}
	}
	return &network{err: fmt.Errorf("no valid network config in %s: %w", m.opts.ConfDir, errors.Join(errs...))}
}

func (m *Manager) loadDefault() *network {
	cidr := m.podCIDR
	if cidr == "" {
		cidr = m.opts.DefaultSubnet
	}
	subnets, err := parseCIDRs(cidr)
	if err == nil {
		var b []byte
		b, err = defaultConfList(m.opts.DefaultNetworkName, m.opts.DefaultBridge, m.opts.DataDir, subnets)
		if err == nil {
			var list *libcni.NetworkConfigList
			if list, err = libcni.ConfListFromBytes(b); err == nil {
				return &network{list: list, subnets: subnets}
			}
		}
	}
	return &network{err: fmt.Errorf("default network: %w", err)}
}

// loadFile parses a .conflist, or a single-plugin .conf/.json wrapped into a list.
func loadFile(path string) (*libcni.NetworkConfigList, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var list *libcni.NetworkConfigList
	if filepath.Ext(path) == ".conflist" {
		list, err = libcni.ConfListFromBytes(data)
	} else {
		list, err = confToList(data)
	}
	if err != nil {
		return nil, err
	}
	for i, p := range list.Plugins {
		if p.Network == nil || p.Network.Type == "" {
			return nil, fmt.Errorf("plugin %d of network %q has no type", i, list.Name)
		}
	}
	return list, nil
}

func confToList(data []byte) (*libcni.NetworkConfigList, error) {
	conf, err := libcni.NetworkPluginConfFromBytes(data)
	if err != nil {
		return nil, err
	}
	if conf.Network.Type == "" {
		return nil, fmt.Errorf("network config has no plugin type")
	}
	var raw map[string]any
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("parse network config: %w", err)
	}
	b, err := json.Marshal(map[string]any{
		"name":       conf.Network.Name,
		"cniVersion": conf.Network.CNIVersion,
		"plugins":    []any{raw},
	})
	if err != nil {
		return nil, err
	}
	return libcni.ConfListFromBytes(b)
}

// ready returns the network's config list, or errdefs.ErrFailedPrecondition with the reason.
func (n *network) ready() (*libcni.NetworkConfigList, error) {
	if n.err != nil {
		return nil, fmt.Errorf("cni network not ready: %w: %w", n.err, errdefs.ErrFailedPrecondition)
	}
	return n.list, nil
}
