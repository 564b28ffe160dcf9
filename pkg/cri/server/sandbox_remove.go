package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// RemovePodSandbox stops the pod, removes its containers and releases everything it owns.
// Removing an unknown pod is success.
func (s *Service) RemovePodSandbox(ctx context.Context, req *runtimeapi.RemovePodSandboxRequest) (*runtimeapi.RemovePodSandboxResponse, error) {
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.RemovePodSandboxResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("remove pod sandbox: %w", err)
	}
	if err := s.removeSandbox(ctx, sb); err != nil {
		return nil, fmt.Errorf("remove pod sandbox %s: %w", sb.ID(), err)
	}
	return &runtimeapi.RemovePodSandboxResponse{}, nil
}

// opRemovePod names RemovePodSandbox's steps in berth_operation_step_duration_seconds.
const opRemovePod = "RemovePodSandbox"

func (s *Service) removeSandbox(ctx context.Context, sb *store.Sandbox) error {
	defer s.events.sandbox(sb.ID())
	// Wait for creates in flight, and hold off new ones (they then find the sandbox gone),
	// so that the containers listed below are all there will be.
	defer s.sandboxLocks.lock(sb.ID())()
	err := sb.Update(func(st *store.SandboxStatus) error { st.Removing = true; return nil })
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.stopSandbox(ctx, sb, opRemovePod); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	md := sb.Metadata()
	err = s.timeStep(opRemovePod, "remove containers", func() error {
		for _, c := range s.store.ContainersOf(md.ID) {
			if err := s.removeContainer(ctx, c); err != nil {
				return fmt.Errorf("remove container %s: %w", c.ID(), err)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := s.timeStep(opRemovePod, "release resources", func() error { return s.releaseAll(ctx, md.ID) }); err != nil {
		return err
	}
	if err := s.store.Sandboxes.Delete(md.ID); err != nil {
		return err
	}
	s.nriRemovePodSandbox(md)
	s.names.Release(md.Name)
	return nil
}
