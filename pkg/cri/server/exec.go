package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// Exec validates the request and returns the streaming server's URL for it; the command
// starts when the client connects (streaming_runtime.go).
func (s *Service) Exec(ctx context.Context, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec: no command: %w", errdefs.ErrInvalidArgument)
	}
	c, _, err := s.execTarget(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("exec: %w", err)
	}
	streams, err := s.streams()
	if err != nil {
		return nil, fmt.Errorf("exec in container %s: %w", c.ID(), err)
	}
	r := proto.CloneOf(req)
	r.ContainerId = c.ID()
	return streams.execURL(r)
}

// execTarget resolves a container that can run an exec: it must be running (CRI: exec in a
// stopped container is FailedPrecondition) and its shim connected.
func (s *Service) execTarget(id string) (*store.Container, ShimClient, error) {
	if id == "" {
		return nil, nil, fmt.Errorf("no container id: %w", errdefs.ErrInvalidArgument)
	}
	c, err := s.store.Containers.Resolve(id)
	if err != nil {
		return nil, nil, err
	}
	if st := c.Status(); st.State != store.ContainerRunning {
		return nil, nil, fmt.Errorf("container %s is %s, not running: %w", c.ID(), st.State, errdefs.ErrFailedPrecondition)
	}
	cl, err := s.client(c.Metadata().SandboxID)
	if err != nil {
		return nil, nil, fmt.Errorf("container %s: %w", c.ID(), err)
	}
	return c, cl, nil
}

// streams returns the streaming server, which is off when no address is configured.
func (s *Service) streams() (*streamServer, error) {
	if s.streaming == nil {
		return nil, fmt.Errorf("streaming server is not enabled (streaming.address): %w", errdefs.ErrUnavailable)
	}
	return s.streaming, nil
}
