package server

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// statsStreamBatch is how many items one streamed response carries: well below the gRPC
// message limit for any realistic label set.
const statsStreamBatch = 100

// ContainerStats reports one container's usage from the stats cache.
func (s *Service) ContainerStats(ctx context.Context, req *runtimeapi.ContainerStatsRequest) (*runtimeapi.ContainerStatsResponse, error) {
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("container stats: %w", err)
	}
	snap := s.stats.fresh()
	return &runtimeapi.ContainerStatsResponse{Stats: s.toContainerStats(c, snap)}, nil
}

// ListContainerStats reports the usage of the containers that match the filter.
func (s *Service) ListContainerStats(ctx context.Context, req *runtimeapi.ListContainerStatsRequest) (*runtimeapi.ListContainerStatsResponse, error) {
	return &runtimeapi.ListContainerStatsResponse{Stats: s.listContainerStats(req.GetFilter())}, nil
}

// StreamContainerStats sends the same list in batches.
func (s *Service) StreamContainerStats(req *runtimeapi.StreamContainerStatsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainerStatsResponse]) error {
	all := s.listContainerStats(req.GetFilter())
	return sendBatches(all, func(b []*runtimeapi.ContainerStats) error {
		return stream.Send(&runtimeapi.StreamContainerStatsResponse{ContainerStats: b})
	})
}

// sendBatches sends items in lists of at most statsStreamBatch, and one empty list when
// there is nothing, so that the client sees a well-formed stream.
func sendBatches[T any](items []T, send func([]T) error) error {
	if len(items) == 0 {
		return send(nil)
	}
	for len(items) > 0 {
		n := min(len(items), statsStreamBatch)
		if err := send(items[:n]); err != nil {
			return err
		}
		items = items[n:]
	}
	return nil
}

func (s *Service) listContainerStats(f *runtimeapi.ContainerStatsFilter) []*runtimeapi.ContainerStats {
	snap := s.stats.fresh()
	out := []*runtimeapi.ContainerStats{}
	for _, c := range s.store.Containers.List() {
		md := c.Metadata()
		switch {
		case f.GetId() != "" && !strings.HasPrefix(md.ID, f.GetId()):
			continue
		case f.GetPodSandboxId() != "" && !strings.HasPrefix(md.SandboxID, f.GetPodSandboxId()):
			continue
		case !matchLabels(md.Config.GetLabels(), f.GetLabelSelector()):
			continue
		}
		out = append(out, s.toContainerStats(c, snap))
	}
	return out
}

// toContainerStats fills what the cache holds; a container without a live cgroup (created,
// exited) has only its attributes and writable layer.
func (s *Service) toContainerStats(c *store.Container, snap *statsSnapshot) *runtimeapi.ContainerStats {
	md := c.Metadata()
	cfg := md.Config.ContainerConfig
	out := &runtimeapi.ContainerStats{Attributes: &runtimeapi.ContainerAttributes{
		Id: md.ID, Metadata: cfg.GetMetadata(), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
	}}
	sample := snap.Containers[md.ID]
	if sample == nil {
		return out
	}
	if sample.CG != nil {
		out.Cpu, out.Memory, out.Swap = cpuUsage(sample.CG), memoryUsage(sample.CG), swapUsage(sample.CG)
	}
	if sample.HasLayer {
		out.WritableLayer = &runtimeapi.FilesystemUsage{
			Timestamp:  sample.Layer.At.UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: filepath.Dir(md.LayerDir)},
			UsedBytes:  u64(sample.Layer.Bytes),
			InodesUsed: u64(sample.Layer.Inodes),
		}
	}
	return out
}

func u64(v uint64) *runtimeapi.UInt64Value { return &runtimeapi.UInt64Value{Value: v} }

func cpuUsage(cg *cgSample) *runtimeapi.CpuUsage {
	u := &runtimeapi.CpuUsage{Timestamp: cg.Timestamp.UnixNano(), UsageCoreNanoSeconds: u64(cg.CPUUsageNanos)}
	if cg.HasRate {
		u.UsageNanoCores = u64(cg.NanoCores)
	}
	return u
}

func memoryUsage(cg *cgSample) *runtimeapi.MemoryUsage {
	m := &runtimeapi.MemoryUsage{
		Timestamp:       cg.Timestamp.UnixNano(),
		WorkingSetBytes: u64(cg.MemoryWorkingSetBytes),
		UsageBytes:      u64(cg.MemoryUsageBytes),
		RssBytes:        u64(cg.MemoryRSSBytes),
		PageFaults:      u64(cg.PageFaults),
		MajorPageFaults: u64(cg.MajorPageFaults),
	}
	// Available is only meaningful under a real limit; "unlimited" reads as a huge number.
	if limited(cg.MemoryLimitBytes) {
		avail := uint64(0)
		if cg.MemoryLimitBytes > cg.MemoryWorkingSetBytes {
			avail = cg.MemoryLimitBytes - cg.MemoryWorkingSetBytes
		}
		m.AvailableBytes = u64(avail)
	}
	return m
}

func swapUsage(cg *cgSample) *runtimeapi.SwapUsage {
	return &runtimeapi.SwapUsage{Timestamp: cg.Timestamp.UnixNano(), SwapUsageBytes: u64(cg.SwapUsageBytes)}
}

// limited tells a set memory limit from the kernel's "max" (page-rounded int64 max on v1).
func limited(limit uint64) bool { return limit > 0 && limit < 1<<62 }
