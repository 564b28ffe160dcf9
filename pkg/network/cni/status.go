package cni

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/pkg/invoke"
)

// Status returns nil when pods can be networked, else the reason (for the CRI NetworkReady
// condition): no valid config (with the parse errors), or a plugin binary the config names is
// missing from the plugin dirs, or the default bridge could not be readdressed for a new pod
// CIDR (retried here, so the condition clears once the bridge can be). It rescans the config dir.
func (m *Manager) Status() error {
	n := m.network()
	list, err := n.ready()
	if err != nil {
		return err
	}
	if err := m.bridgeStatus(n); err != nil {
		return fmt.Errorf("cni network not ready: %w: %w", err, errdefs.ErrFailedPrecondition)
	}
	var errs []error
	for _, p := range list.Plugins {
		if _, err := invoke.FindInPath(p.Network.Type, m.opts.BinDirs); err != nil {
			errs = append(errs, fmt.Errorf("plugin %q of network %q not found in %v", p.Network.Type, list.Name, m.opts.BinDirs))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("cni network not ready: %w: %w", errors.Join(errs...), errdefs.ErrFailedPrecondition)
	}
	return nil
}

// NetworkName is the name of the network in force, "" when none is valid.
func (m *Manager) NetworkName() string {
	if n := m.network(); n.list != nil {
		return n.list.Name
	}
	return ""
}
