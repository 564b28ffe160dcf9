package server

import (
	"context"
	"fmt"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// PodSandboxStats reports a pod's usage: its cgroup, network and containers.
func (s *Service) PodSandboxStats(ctx context.Context, req *runtimeapi.PodSandboxStatsRequest) (*runtimeapi.PodSandboxStatsResponse, error) {
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("pod sandbox stats: %w", err)
	}
	return &runtimeapi.PodSandboxStatsResponse{Stats: s.toPodStats(sb, s.stats.fresh())}, nil
}

// ListPodSandboxStats reports the usage of the pods that match the filter.
func (s *Service) ListPodSandboxStats(ctx context.Context, req *runtimeapi.ListPodSandboxStatsRequest) (*runtimeapi.ListPodSandboxStatsResponse, error) {
	return &runtimeapi.ListPodSandboxStatsResponse{Stats: s.listPodStats(req.GetFilter())}, nil
}

// StreamPodSandboxStats sends the same list in batches.
func (s *Service) StreamPodSandboxStats(req *runtimeapi.StreamPodSandboxStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxStatsResponse]) error {
	return sendBatches(s.listPodStats(req.GetFilter()), func(b []*runtimeapi.PodSandboxStats) error {
		return stream.Send(&runtimeapi.StreamPodSandboxStatsResponse{PodSandboxStats: b})
	})
}

func (s *Service) listPodStats(f *runtimeapi.PodSandboxStatsFilter) []*runtimeapi.PodSandboxStats {
	snap := s.stats.fresh()
	out := []*runtimeapi.PodSandboxStats{}
	for _, sb := range s.store.Sandboxes.List() {
		md := sb.Metadata()
		switch {
		case f.GetId() != "" && !strings.HasPrefix(md.ID, f.GetId()):
			continue
		case !matchLabels(md.Config.GetLabels(), f.GetLabelSelector()):
			continue
		}
		out = append(out, s.toPodStats(sb, snap))
	}
	return out
}

func (s *Service) toPodStats(sb *store.Sandbox, snap *statsSnapshot) *runtimeapi.PodSandboxStats {
	md := sb.Metadata()
	cfg := md.Config.PodSandboxConfig
	out := &runtimeapi.PodSandboxStats{
		Attributes: &runtimeapi.PodSandboxAttributes{
			Id: md.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		},
		Linux: &runtimeapi.LinuxPodSandboxStats{},
	}
	lx := out.Linux
	if p := snap.Pods[md.ID]; p != nil {
		if p.CG != nil {
			lx.Cpu, lx.Memory = cpuUsage(p.CG), memoryUsage(p.CG)
			lx.Process = &runtimeapi.ProcessUsage{Timestamp: p.CG.Timestamp.UnixNano(), ProcessCount: u64(p.CG.PidsCurrent)}
		}
		if !p.NetAt.IsZero() {
			lx.Network = networkUsage(p)
		}
	}
	for _, c := range s.store.ContainersOf(md.ID) {
		lx.Containers = append(lx.Containers, s.toContainerStats(c, snap))
	}
	return out
}

func networkUsage(p *podSample) *runtimeapi.NetworkUsage {
	n := &runtimeapi.NetworkUsage{Timestamp: p.NetAt.UnixNano()}
	def, rest, ok := defaultInterface(p.Net)
	if !ok {
		return n
	}
	n.DefaultInterface = ifaceUsage(def)
	for _, f := range rest {
		n.Interfaces = append(n.Interfaces, ifaceUsage(f))
	}
	return n
}

func ifaceUsage(f ifaceStats) *runtimeapi.NetworkInterfaceUsage {
	return &runtimeapi.NetworkInterfaceUsage{
		Name: f.Name, RxBytes: u64(f.RxBytes), RxErrors: u64(f.RxErrors), TxBytes: u64(f.TxBytes), TxErrors: u64(f.TxErrors),
	}
}
