package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// PortForward validates the sandbox and returns the streaming server's URL; each forwarded
// connection is dialled inside the pod's network namespace (streaming_runtime.go).
func (s *Service) PortForward(ctx context.Context, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	for _, p := range req.GetPort() {
		if p <= 0 || p > 65535 {
			return nil, fmt.Errorf("port forward: port %d is out of range: %w", p, errdefs.ErrInvalidArgument)
		}
	}
	sb, err := s.forwardTarget(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("port forward: %w", err)
	}
	streams, err := s.streams()
	if err != nil {
		return nil, fmt.Errorf("port forward to sandbox %s: %w", sb.ID(), err)
	}
	r := proto.CloneOf(req)
	r.PodSandboxId = sb.ID()
	return streams.portForwardURL(r)
}

// forwardTarget resolves a sandbox whose network can be reached: it must be ready.
func (s *Service) forwardTarget(id string) (*store.Sandbox, error) {
	if id == "" {
		return nil, fmt.Errorf("no sandbox id: %w", errdefs.ErrInvalidArgument)
	}
	sb, err := s.store.Sandboxes.Resolve(id)
	if err != nil {
		return nil, err
	}
	if st := sb.Status(); st.State != store.SandboxReady {
		return nil, fmt.Errorf("sandbox %s is %s, not ready: %w", sb.ID(), st.State, errdefs.ErrFailedPrecondition)
	}
	return sb, nil
}
