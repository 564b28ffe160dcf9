package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Attach validates the request against the container and returns the streaming server's
// URL; the streams connect to the container's main process when the client arrives.
func (s *Service) Attach(ctx context.Context, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	c, _, err := s.execTarget(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("attach: %w", err)
	}
	cfg := c.Metadata().Config.ContainerConfig
	// The container's stdin and tty were fixed at creation: a client cannot write to a stdin
	// that does not exist, nor resize a terminal that is not there.
	if req.GetStdin() && !cfg.GetStdin() {
		return nil, fmt.Errorf("attach to container %s: stdin requested but the container was created without stdin: %w", c.ID(), errdefs.ErrInvalidArgument)
	}
	if req.GetTty() && !cfg.GetTty() {
		return nil, fmt.Errorf("attach to container %s: tty requested but the container has none: %w", c.ID(), errdefs.ErrInvalidArgument)
	}
	streams, err := s.streams()
	if err != nil {
		return nil, fmt.Errorf("attach to container %s: %w", c.ID(), err)
	}
	r := proto.CloneOf(req)
	r.ContainerId = c.ID()
	return streams.attachURL(r)
}
