package server

import (
	"context"
	"strings"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ListPodSandbox lists the pods that match the filter.
func (s *Service) ListPodSandbox(ctx context.Context, req *runtimeapi.ListPodSandboxRequest) (*runtimeapi.ListPodSandboxResponse, error) {
	return &runtimeapi.ListPodSandboxResponse{Items: s.listSandboxes(req.GetFilter())}, nil
}

// StreamPodSandboxes sends the same list in one message.
func (s *Service) StreamPodSandboxes(req *runtimeapi.StreamPodSandboxesRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxesResponse]) error {
	return stream.Send(&runtimeapi.StreamPodSandboxesResponse{PodSandboxes: s.listSandboxes(req.GetFilter())})
}

func (s *Service) listSandboxes(f *runtimeapi.PodSandboxFilter) []*runtimeapi.PodSandbox {
	out := []*runtimeapi.PodSandbox{}
	for _, sb := range s.store.Sandboxes.List() {
		md, st := sb.Metadata(), sb.Status()
		cfg := md.Config.PodSandboxConfig
		state := toCRISandboxState(st)
		switch {
		case f.GetId() != "" && !strings.HasPrefix(md.ID, f.GetId()):
			continue
		case f.GetState() != nil && f.GetState().GetState() != state:
			continue
		case !matchLabels(cfg.GetLabels(), f.GetLabelSelector()):
			continue
		}
		out = append(out, &runtimeapi.PodSandbox{
			Id: md.ID, Metadata: cfg.GetMetadata(), State: state, CreatedAt: md.CreatedAt.UnixNano(),
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), RuntimeHandler: md.RuntimeHandler,
		})
	}
	return out
}

// matchLabels reports whether labels contain every selector pair.
func matchLabels(labels, selector map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}
