package cni

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	"github.com/containernetworking/cni/pkg/version"
)

// gcCNIVersion is the first spec version with the GC verb.
const gcCNIVersion = "1.1.0"

// GC releases what sandboxes outside valid (sandbox ids the caller still knows) hold after a
// crash: every cached attachment of an unknown sandbox gets a DEL with its own cached config,
// then the current network gets a CNI GC (spec 1.1) listing the valid attachments.
//
// host-local is reached directly as well: it implements GC, but behind bridge (which does not
// forward GC to its IPAM plugin) it would never see it, and its reservations of sandboxes that
// died before their ADD was cached would leak forever.
//
// Run it at startup, before serving: an ADD in flight for a sandbox not in valid may lose its IP.
func (m *Manager) GC(ctx context.Context, valid []string) error {
	keep := make(map[string]bool, len(valid))
	attachments := make([]types.GCAttachment, 0, len(valid))
	for _, id := range valid {
		keep[id] = true
		attachments = append(attachments, types.GCAttachment{ContainerID: id, IfName: m.opts.IfName})
	}
	var errs []error
	cached, err := m.cni.GetCachedAttachments("")
	if err != nil {
		errs = append(errs, fmt.Errorf("cni gc: read cache: %w", err))
	}
	for _, a := range cached {
		if keep[a.ContainerID] {
			continue
		}
		m.log.Info("cni gc: releasing stale attachment", "sandbox", a.ContainerID, "network", a.Network)
		if err := m.delCached(ctx, a, ""); err != nil {
			errs = append(errs, fmt.Errorf("cni gc: %w", err))
		}
	}
	if list := m.network().list; list != nil {
		if err := m.gcList(ctx, list, attachments); err != nil {
			errs = append(errs, err)
		}
	}
	// Old gateways whose pods went while the agent was down.
	m.pruneBridge()
	return errors.Join(errs...)
}

func (m *Manager) gcList(ctx context.Context, list *libcni.NetworkConfigList, valid []types.GCAttachment) error {
	var errs []error
	if ok, _ := version.GreaterThanOrEqualTo(list.CNIVersion, gcCNIVersion); ok {
		if err := m.cni.GCNetworkList(ctx, list, &libcni.GCArgs{ValidAttachments: valid}); err != nil {
			errs = append(errs, fmt.Errorf("cni gc network %q: %w", list.Name, err))
		}
	}
	for _, p := range list.Plugins {
		if err := m.gcHostLocal(ctx, list.Name, p, valid); err != nil {
			errs = append(errs, fmt.Errorf("cni gc network %q: host-local ipam of plugin %s: %w", list.Name, p.Network.Type, err))
		}
	}
	return errors.Join(errs...)
}

// gcHostLocal execs host-local's GC with the plugin's ipam section, taking host-local's own
// lock on its data dir. The config is presented as 1.1.0 (the first version with GC) since
// host-local v1.5+ reads the same ipam section for every version.
func (m *Manager) gcHostLocal(ctx context.Context, network string, p *libcni.PluginConfig, valid []types.GCAttachment) error {
	if p.Network.IPAM.Type != "host-local" {
		return nil
	}
	var raw map[string]any
	if err := json.Unmarshal(p.Bytes, &raw); err != nil {
		return fmt.Errorf("parse plugin config: %w", err)
	}
	raw["name"] = network
	raw["cniVersion"] = gcCNIVersion
	raw["cni.dev/valid-attachments"] = valid
	// The spec's original (misspelt) key, read by plugins of spec 1.1.0's first releases.
	raw["cni.dev/attachments"] = valid
	delete(raw, "prevResult")
	conf, err := json.Marshal(raw)
	if err != nil {
		return err
	}
	path, err := invoke.FindInPath("host-local", m.opts.BinDirs)
	if err != nil {
		return err
	}
	return invoke.ExecPluginWithoutResult(ctx, path, conf, &invoke.Args{Command: "GC", Path: joinPath(m.opts.BinDirs)}, nil)
}
