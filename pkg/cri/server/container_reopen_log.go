package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// ReopenContainerLog asks the shim to reopen the log file after the kubelet rotated it.
func (s *Service) ReopenContainerLog(ctx context.Context, req *runtimeapi.ReopenContainerLogRequest) (*runtimeapi.ReopenContainerLogResponse, error) {
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("reopen container log: %w", err)
	}
	if st := c.Status(); st.State != store.ContainerRunning {
		return nil, fmt.Errorf("reopen container log %s: container is %s, not running: %w", c.ID(), st.State, errdefs.ErrFailedPrecondition)
	}
	cl, err := s.client(c.Metadata().SandboxID)
	if err != nil {
		return nil, fmt.Errorf("reopen container log %s: %w", c.ID(), err)
	}
	if err := cl.ReopenLog(ctx, c.ID()); err != nil {
		return nil, fmt.Errorf("reopen container log %s: %w", c.ID(), err)
	}
	return &runtimeapi.ReopenContainerLogResponse{}, nil
}
