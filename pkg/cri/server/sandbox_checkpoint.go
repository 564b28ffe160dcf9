package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// CheckpointPod is refused: the CRI asks for one consistent cut of the whole pod (every
// selected container frozen before the first is dumped, all resumed before returning),
// which needs CRIU to dump several containers' process trees while all of them stay frozen;
// berth dumps one container at a time (CheckpointContainer).
func (s *Service) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if err := s.checkpointAllowed(); err != nil {
		return nil, fmt.Errorf("checkpoint pod %q: %w", req.GetPodSandboxId(), err)
	}
	return nil, fmt.Errorf("checkpoint pod %q: a pod-wide consistent checkpoint is not implemented; checkpoint its containers with CheckpointContainer: %w",
		req.GetPodSandboxId(), errdefs.ErrNotImplemented)
}

// RestorePod is refused with CheckpointPod: there are no pod checkpoints to restore. A
// container checkpoint restores into a pod by CreateContainer with the archive as image.
func (s *Service) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	if err := s.checkpointAllowed(); err != nil {
		return nil, fmt.Errorf("restore pod from %q: %w", req.GetCheckpointPath(), err)
	}
	return nil, fmt.Errorf("restore pod from %q: pod checkpoints are not implemented; restore each container with CreateContainer whose image is its checkpoint archive: %w",
		req.GetCheckpointPath(), errdefs.ErrNotImplemented)
}
