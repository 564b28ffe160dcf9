package cni

import (
	"context"
	"errors"
	"fmt"

	"github.com/containernetworking/cni/libcni"
)

// Teardown runs CNI DEL for the sandbox. It is idempotent: a second call, or a call for a
// sandbox that was never set up, succeeds, and releases nothing that belongs to another
// sandbox (host-local releases by container id). The netns may already be gone; the plugins
// still release the IP then.
//
// DEL uses the config and arguments cached by the ADD when there are any, so a pod keeps
// being torn down with the network it was set up with even after the config changed.
// Without a cache entry (already torn down, or a crash before ADD finished) DEL runs against
// the current network with the request's arguments. On error the caller retries
// (StopPodSandbox fails and the kubelet calls it again).
func (m *Manager) Teardown(ctx context.Context, req TeardownRequest) error {
	if req.ID == "" {
		return fmt.Errorf("cni teardown: sandbox id is empty")
	}
	atts, err := m.cni.GetCachedAttachments(req.ID)
	if err != nil {
		return fmt.Errorf("cni teardown sandbox %s: read cache: %w", req.ID, err)
	}
	if len(atts) > 0 {
		var errs []error
		for _, a := range atts {
			if err := m.delCached(ctx, a, req.NetNSPath); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 {
			// The last pod of an old pod CIDR may have left: its gateway goes too.
			m.pruneBridge()
		}
		return errors.Join(errs...)
	}
	n := m.network()
	if n.list == nil {
		// Without a config and without a cache entry there is nothing this sandbox could
		// hold: ADD never ran or never reached a plugin. Failing would wedge StopPodSandbox.
		m.log.Warn("cni teardown without network config or cached attachment", "sandbox", req.ID, "error", n.err)
		return nil
	}
	rt := m.runtimeConf(req)
	return m.delList(ctx, n.list, rt)
}

// delCached runs DEL for one cached attachment with the config and arguments of its ADD.
func (m *Manager) delCached(ctx context.Context, a *libcni.NetworkAttachment, netnsPath string) error {
	list, err := libcni.ConfListFromBytes(a.Config)
	if err != nil {
		return fmt.Errorf("cni del sandbox %s: cached config of network %q: %w", a.ContainerID, a.Network, err)
	}
	ns := a.NetNS
	if netnsPath != "" {
		ns = netnsPath
	}
	return m.delList(ctx, list, &libcni.RuntimeConf{
		ContainerID:    a.ContainerID,
		NetNS:          ns,
		IfName:         a.IfName,
		Args:           a.CniArgs,
		CapabilityArgs: a.CapabilityArgs,
	})
}
