package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// RemoveContainer stops the container if needed and removes everything it owns. An unknown
// id is success.
func (s *Service) RemoveContainer(ctx context.Context, req *runtimeapi.RemoveContainerRequest) (*runtimeapi.RemoveContainerResponse, error) {
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemoveContainerResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remove container: %w", err)
	}
	if err := s.removeContainer(ctx, c); err != nil {
		return nil, fmt.Errorf("remove container %s: %w", c.ID(), err)
	}
	return &runtimeapi.RemoveContainerResponse{}, nil
}

func (s *Service) removeContainer(ctx context.Context, c *store.Container) error {
	defer s.events.container(c.ID())
	err := c.Update(func(st *store.ContainerStatus) error {
		if st.Starting {
			return fmt.Errorf("container is starting: %w", errdefs.ErrFailedPrecondition)
		}
		st.Removing = true
		return nil
	})
	if errdefs.IsNotFound(err) {
		return nil // removed concurrently
	}
	if err != nil {
		return err
	}
	if err := s.stopContainer(ctx, c, 0); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	md := c.Metadata()
	if cl, err := s.client(md.SandboxID); err == nil {
		if err := cl.Delete(ctx, md.ID); err != nil {
			return fmt.Errorf("delete from shim: %w", err)
		}
	}
	if err := s.releaseAll(ctx, md.ID); err != nil {
		return err
	}
	if err := s.store.Containers.Delete(md.ID); err != nil {
		return err
	}
	s.nriRemoveContainer(c)
	s.names.Release(md.Name)
	return nil
}
