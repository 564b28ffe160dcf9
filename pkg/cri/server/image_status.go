package server

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageStatus returns the image, or an empty response when it is not present
// (the CRI asks for a nil image rather than NotFound here).
func (s *Service) ImageStatus(ctx context.Context, req *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := imageRef(req.GetImage())
	if ref == "" {
		return nil, fmt.Errorf("image status: no image reference given: %w", errdefs.ErrInvalidArgument)
	}
	img, err := s.images.Get(ctx, ref)
	if errdefs.IsNotFound(err) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("image status %q: %w", ref, err)
	}
	resp := &runtimeapi.ImageStatusResponse{Image: toCRIImage(img)}
	if req.GetVerbose() {
		info, err := imageInfo(img.ID, img.ConfigJSON)
		if err != nil {
			return nil, fmt.Errorf("image status %q: verbose info: %w", ref, err)
		}
		resp.Info = map[string]string{"info": info}
	}
	return resp, nil
}

// imageInfo is the verbose "info" entry: the image id and its OCI config, in
// the shape crictl inspecti prints for containerd.
func imageInfo(id string, config []byte) (string, error) {
	v := struct {
		ID        string          `json:"id"`
		ImageSpec json.RawMessage `json:"imageSpec,omitempty"`
	}{ID: id}
	if len(config) > 0 {
		v.ImageSpec = config
	}
	b, err := json.Marshal(v)
	return string(b), err
}
