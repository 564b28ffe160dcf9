package server

import (
	"errors"
	"io"
	"log/slog"
	"sync/atomic"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/config"
)

// Options are the dependencies of a Service. Each is an interface declared
// where it is consumed, so that tests pass fakes.
type Options struct {
	Config config.Config
	Images ImageStore
	Logger *slog.Logger
}

// Service implements runtimeapi.RuntimeServiceServer and runtimeapi.ImageServiceServer.
// RPCs that berth cannot serve yet fall through to the embedded Unimplemented servers.
type Service struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	runtimeapi.UnimplementedImageServiceServer

	cfg    config.Config
	images ImageStore
	log    *slog.Logger
	ready  atomic.Bool
}

// New builds a Service. It is not Ready until recovery has run.
func New(opts Options) (*Service, error) {
	if opts.Images == nil {
		return nil, errors.New("new cri service: no image store")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Service{cfg: opts.Config, images: opts.Images, log: log}, nil
}

// Register adds both CRI services to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// Ready reports whether startup recovery has finished.
func (s *Service) Ready() bool { return s.ready.Load() }
