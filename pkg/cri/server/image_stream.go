package server

import (
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// streamBatch bounds a StreamImages message well below gRPC's 4 MiB default
// even for images with many tags.
const streamBatch = 500

// StreamImages sends ListImages' answer in batches of at least one image.
func (s *Service) StreamImages(req *runtimeapi.StreamImagesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamImagesResponse]) error {
	imgs, err := s.listImages(stream.Context(), req.GetFilter())
	if err != nil {
		return err
	}
	for start := 0; start < len(imgs); start += streamBatch {
		end := min(start+streamBatch, len(imgs))
		if err := stream.Send(&runtimeapi.StreamImagesResponse{Images: imgs[start:end]}); err != nil {
			return err
		}
	}
	return nil
}
