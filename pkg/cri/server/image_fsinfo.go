package server

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageFsInfo reports the bytes and inodes used by the image store and, in
// container_filesystems, by the containers' writable layers: the kubelet's eviction manager
// reclaims disk from whichever fills, and without the second it would count only images.
func (s *Service) ImageFsInfo(ctx context.Context, _ *runtimeapi.ImageFsInfoRequest) (*runtimeapi.ImageFsInfoResponse, error) {
	u, err := s.images.FsUsage(ctx)
	if err != nil {
		return nil, fmt.Errorf("image fs info: %w", err)
	}
	return &runtimeapi.ImageFsInfoResponse{
		ImageFilesystems: []*runtimeapi.FilesystemUsage{{
			Timestamp:  time.Now().UnixNano(),
			FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: u.Mountpoint},
			UsedBytes:  &runtimeapi.UInt64Value{Value: u.UsedBytes},
			InodesUsed: &runtimeapi.UInt64Value{Value: u.InodesUsed},
		}},
		ContainerFilesystems: []*runtimeapi.FilesystemUsage{s.containerFsUsage()},
	}, nil
}

// containerFsUsage sums the writable layers (<root>/containers/<id>/upper) from the stats
// cache, the one place layers are walked (at most once per stats period: a walk costs a
// syscall per file and the kubelet asks every few seconds).
func (s *Service) containerFsUsage() *runtimeapi.FilesystemUsage {
	snap := s.stats.fresh()
	var bytes, inodes uint64
	for _, c := range snap.Containers {
		if c.HasLayer {
			bytes += c.Layer.Bytes
			inodes += c.Layer.Inodes
		}
	}
	return &runtimeapi.FilesystemUsage{
		Timestamp:  snap.At.UnixNano(),
		FsId:       &runtimeapi.FilesystemIdentifier{Mountpoint: filepath.Join(s.cfg.Root, "containers")},
		UsedBytes:  u64(bytes),
		InodesUsed: u64(inodes),
	}
}
