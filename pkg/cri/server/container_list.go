package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListContainers lists the containers that match the filter.
func (s *Service) ListContainers(ctx context.Context, req *runtimeapi.ListContainersRequest) (*runtimeapi.ListContainersResponse, error) {
	return &runtimeapi.ListContainersResponse{Containers: s.listContainers(req.GetFilter())}, nil
}

// StreamContainers sends the same list in one message.
func (s *Service) StreamContainers(req *runtimeapi.StreamContainersRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamContainersResponse]) error {
	return stream.Send(&runtimeapi.StreamContainersResponse{Containers: s.listContainers(req.GetFilter())})
}

func (s *Service) listContainers(f *runtimeapi.ContainerFilter) []*runtimeapi.Container {
	out := []*runtimeapi.Container{}
	for _, c := range s.store.Containers.List() {
		md, st := c.Metadata(), c.Status()
		cfg := md.Config.ContainerConfig
		state := toCRIContainerState(st)
		switch {
		case f.GetId() != "" && !strings.HasPrefix(md.ID, f.GetId()):
			continue
		case f.GetPodSandboxId() != "" && !strings.HasPrefix(md.SandboxID, f.GetPodSandboxId()):
			continue
		case f.GetState() != nil && f.GetState().GetState() != state:
			continue
		case !matchLabels(cfg.GetLabels(), f.GetLabelSelector()):
			continue
		}
		out = append(out, &runtimeapi.Container{
			Id: md.ID, PodSandboxId: md.SandboxID, Metadata: cfg.GetMetadata(),
			Image:    &runtimeapi.ImageSpec{Image: md.ImageName, Annotations: cfg.GetImage().GetAnnotations()},
			ImageRef: md.ImageID, ImageId: md.ImageID, State: state, CreatedAt: md.CreatedAt.UnixNano(),
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		})
	}
	return out
}
