package server

import (
	"context"
	"fmt"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// RuntimeConfig tells the kubelet which cgroup driver berth uses, so that the two agree.
func (s *Service) RuntimeConfig(ctx context.Context, req *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.cfg.CgroupDriver == cgroups.DriverSystemd {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig hands the node's pod CIDR to the pod network, which allocates new pod
// IPs from it from then on; pods already running keep their addresses (pkg/network/cni
// bridge_addr.go). The CIDR is recorded in the store: the kubelet sends it only when it
// changed from what it sent last, so a restarted agent would otherwise fall back to
// default_subnet while the node's routes point at the kubelet's CIDR.
func (s *Service) UpdateRuntimeConfig(ctx context.Context, req *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	if cidr := req.GetRuntimeConfig().GetNetworkConfig().GetPodCidr(); cidr != "" {
		if err := s.network.SetPodCIDR(cidr); err != nil {
			return nil, fmt.Errorf("update runtime config: %w", err)
		}
		if err := s.store.SetSetting(store.SettingPodCIDR, cidr); err != nil {
			return nil, fmt.Errorf("update runtime config: pod cidr %s: %w", cidr, err)
		}
		s.podCIDR.Store(cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}

// restorePodCIDR gives the pod network the pod CIDR recorded before a restart, before any
// pod is set up or the network garbage-collected.
func (s *Service) restorePodCIDR() error {
	cidr, err := s.store.Setting(store.SettingPodCIDR)
	if err != nil || cidr == "" {
		return err
	}
	if err := s.network.SetPodCIDR(cidr); err != nil {
		return fmt.Errorf("restore pod cidr: %w", err)
	}
	s.podCIDR.Store(cidr)
	s.log.Info("pod cidr restored", "cidr", cidr)
	return nil
}
