package server

import (
	"context"
	"fmt"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// StartContainer starts a created container and begins tracking its exit.
func (s *Service) StartContainer(ctx context.Context, req *runtimeapi.StartContainerRequest) (*runtimeapi.StartContainerResponse, error) {
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("start container: %w", err)
	}
	if err := s.startContainer(ctx, c); err != nil {
		return nil, fmt.Errorf("start container %s: %w", c.ID(), err)
	}
	return &runtimeapi.StartContainerResponse{}, nil
}

func (s *Service) startContainer(ctx context.Context, c *store.Container) error {
	defer s.events.container(c.ID())
	// Starting guards against a concurrent Start or Remove while the shim call runs
	// without the record's lock.
	err := c.Update(func(st *store.ContainerStatus) error {
		if err := st.CanStart(); err != nil {
			return err
		}
		st.Starting = true
		return nil
	})
	if err != nil {
		return err
	}
	cl, err := s.client(c.Metadata().SandboxID)
	if err == nil {
		err = s.nriStartContainer(ctx, c)
	}
	if err == nil {
		err = cl.Start(ctx, c.ID())
	}
	if err != nil {
		s.logUpdate(c, c.Update(func(st *store.ContainerStatus) error {
			st.Starting = false
			st.Exited(128, time.Now(), false, "start failed: "+err.Error())
			return nil
		}))
		return err
	}
	// The shim's clock marks the start, as it marks the exit: a container that
	// exits at once must not report finishing before it started.
	pid, started := 0, time.Now()
	if sst, err := cl.State(ctx, c.ID()); err == nil {
		pid = sst.Pid
		if !sst.StartedAt.IsZero() {
			started = sst.StartedAt
		}
	}
	err = c.Update(func(st *store.ContainerStatus) error {
		st.Starting = false
		st.State = store.ContainerRunning
		st.StartedAt = started
		st.Pid = pid
		return nil
	})
	if err != nil {
		return err
	}
	s.watchExit(c, cl)
	s.nriPostStartContainer(ctx, c)
	return nil
}
