package server

import (
	"context"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Version is berth's version, set at build time with
// -ldflags "-X github.com/berth-runtime/berth/pkg/cri/server.Version=v0.1.0".
var Version = "dev"

const (
	runtimeName       = "berth"
	runtimeAPIVersion = "v1"
	// kubeAPIVersion is the version of the CRI the kubelet negotiates with; "0.1.0" is what
	// every CRI runtime answers.
	kubeAPIVersion = "0.1.0"
)

// Version reports the runtime's name and versions.
func (s *Service) Version(ctx context.Context, req *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version: kubeAPIVersion, RuntimeName: runtimeName, RuntimeVersion: Version, RuntimeApiVersion: runtimeAPIVersion,
	}, nil
}
