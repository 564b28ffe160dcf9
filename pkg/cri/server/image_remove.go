package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RemoveImage removes an image with all its tags. An image already gone is
// success: the kubelet's image GC retries removals it cannot tell succeeded.
func (s *Service) RemoveImage(ctx context.Context, req *runtimeapi.RemoveImageRequest) (*runtimeapi.RemoveImageResponse, error) {
	ref := imageRef(req.GetImage())
	if ref == "" {
		return nil, fmt.Errorf("remove image: no image reference given: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.images.Remove(ctx, ref); err != nil && !errdefs.IsNotFound(err) {
		return nil, fmt.Errorf("remove image %q: %w", ref, err)
	}
	return &runtimeapi.RemoveImageResponse{}, nil
}
