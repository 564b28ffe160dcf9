package cni

import (
	"fmt"
	"log/slog"
	"os"
	"sync"

	"github.com/containernetworking/cni/libcni"
)

// Manager attaches pods to the pod network. It is safe for concurrent use; calls for the same
// sandbox id must not overlap (the CRI layer serializes them per sandbox).
type Manager struct {
	opts Options
	cni  *libcni.CNIConfig
	log  *slog.Logger

	// bridge and bridgeMu readdress the default bridge when the pod CIDR changes
	// (bridge_addr.go); one reconcile at a time.
	bridge    bridgeAddrs
	bridgeMu  sync.Mutex
	bridgeErr error // the last readdress failed: Status reports it (and retries) until one works

	mu      sync.Mutex
	podCIDR string   // from the kubelet's UpdateRuntimeConfig; "" until set
	stamp   string   // conf dir contents and pod CIDR the current network was loaded from
	current *network // never nil after New
}

// New validates opts and loads the network config once. A missing or broken config is not an
// error here: Status reports it until a valid config appears.
func New(opts Options) (*Manager, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, fmt.Errorf("cni manager: %w", err)
	}
	if err := os.MkdirAll(opts.CacheDir, 0o700); err != nil {
		return nil, fmt.Errorf("cni manager: create cache dir: %w", err)
	}
	m := &Manager{
		opts:   opts,
		cni:    libcni.NewCNIConfigWithCacheDir(opts.BinDirs, opts.CacheDir, nil),
		log:    opts.Logger,
		bridge: netlinkBridge{},
	}
	m.network()
	return m, nil
}

// SetPodCIDR records the node's pod CIDR (comma-separated for dual-stack), as sent by the
// kubelet in UpdateRuntimeConfig. The default network then allocates from it, and configs
// whose plugins declare the ipRanges capability receive it. "" clears it.
func (m *Manager) SetPodCIDR(cidr string) error {
	if cidr != "" {
		if _, err := parseCIDRs(cidr); err != nil {
			return fmt.Errorf("set pod cidr: %w", err)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.podCIDR != cidr {
		m.log.Info("pod cidr changed", "old", m.podCIDR, "new", cidr)
	}
	m.podCIDR = cidr
	return nil
}

// PodCIDR is the pod CIDR last set with SetPodCIDR.
func (m *Manager) PodCIDR() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.podCIDR
}
