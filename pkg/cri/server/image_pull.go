package server

import (
	"context"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/images"
	"github.com/berth-runtime/berth/pkg/images/remote"
)

// PullImage pulls an image and answers with its id, the config digest, which is
// also what ImageStatus and ContainerStatus report as the image id.
func (s *Service) PullImage(ctx context.Context, req *runtimeapi.PullImageRequest) (*runtimeapi.PullImageResponse, error) {
	ref := imageRef(req.GetImage())
	if ref == "" {
		return nil, fmt.Errorf("pull image: no image reference given: %w", errdefs.ErrInvalidArgument)
	}
	img, err := s.images.Pull(ctx, ref, toAuth(req.GetAuth()))
	if err != nil {
		// The reference is the pod spec's image as written, and registry errors quote
		// URLs: either may carry credentials, which the kubelet would show in pod events.
		return nil, remote.Redact(fmt.Errorf("pull image %q: %w", ref, err))
	}
	return &runtimeapi.PullImageResponse{ImageRef: img.ID}, nil
}

func toAuth(a *runtimeapi.AuthConfig) *images.Auth {
	if a == nil {
		return nil
	}
	return &images.Auth{
		Username:      a.GetUsername(),
		Password:      a.GetPassword(),
		Auth:          a.GetAuth(),
		ServerAddress: a.GetServerAddress(),
		IdentityToken: a.GetIdentityToken(),
		RegistryToken: a.GetRegistryToken(),
	}
}
