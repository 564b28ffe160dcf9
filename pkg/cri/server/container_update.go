package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// UpdateContainerResources applies new cgroup limits through the shim and remembers them.
func (s *Service) UpdateContainerResources(ctx context.Context, req *runtimeapi.UpdateContainerResourcesRequest) (*runtimeapi.UpdateContainerResourcesResponse, error) {
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("update container resources: %w", err)
	}
	if err := s.updateResources(ctx, c, req.GetLinux()); err != nil {
		return nil, fmt.Errorf("update container resources %s: %w", c.ID(), err)
	}
	return &runtimeapi.UpdateContainerResourcesResponse{}, nil
}

// updateResources applies r. A request without Linux resources is refused: berth runs only
// Linux containers, so such a request (Windows resources, or none) could only be answered by a
// success that changed nothing. The kubelet and critest always send Linux resources here.
func (s *Service) updateResources(ctx context.Context, c *store.Container, r *runtimeapi.LinuxContainerResources) error {
	if r == nil {
		return fmt.Errorf("no linux resources: %w", errdefs.ErrInvalidArgument)
	}
	res, err := s.cgroups.ToResources(r)
	if err != nil {
		return err
	}
	st := c.Status()
	switch st.State {
	case store.ContainerCreated, store.ContainerRunning:
	default:
		return fmt.Errorf("container is %s: %w", st.State, errdefs.ErrFailedPrecondition)
	}
	cl, err := s.client(c.Metadata().SandboxID)
	if err != nil {
		return err
	}
	if res, err = s.nriUpdateContainer(ctx, c, res); err != nil {
		return err
	}
	// The shim client's error names the stage ("shim update <id>") and keeps the class: a
	// memory limit below the container's usage is FailedPrecondition, written nowhere.
	if err := cl.Update(ctx, c.ID(), res); err != nil {
		return err
	}
	err = c.Update(func(st *store.ContainerStatus) error {
		st.Resources = store.Resources{LinuxContainerResources: proto.Clone(r).(*runtimeapi.LinuxContainerResources)}
		return nil
	})
	if err == nil {
		s.nriPostUpdateContainer(ctx, c)
	}
	return err
}
