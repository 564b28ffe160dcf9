package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/cri/registrar"
	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/nri"
)

// storeLockTimeout bounds the wait for meta.db's file lock: a second agent on the same root
// must fail at once, not hang.
const storeLockTimeout = 2 * time.Second

// Options are the dependencies of a Service. Each is an interface declared
// where it is consumed, so that tests pass fakes.
type Options struct {
	Config config.Config
	Images ImageStore
	Logger *slog.Logger

	// ContainerImages resolves, mounts and leases images for containers; nil uses Images
	// (which must then also have Lowers, Lease and Unlease, as *images.Service does).
	ContainerImages ContainerImages
	// Store holds sandbox and container records; nil opens <root>/cri/meta.db.
	Store *store.Store
	// Shims starts and reconnects per-pod shims; nil uses pkg/shim with Config.ShimBinary.
	Shims ShimManager
	// Namespaces creates and pins pod namespaces; nil uses pkg/network/netns.
	Namespaces Namespaces
	// Cgroups manages pod cgroups; nil uses pkg/cgroups with Config.CgroupDriver.
	Cgroups Cgroups
	// GenerateSpec builds container specs; nil uses pkg/cri/spec.Generate.
	GenerateSpec SpecGenerator
	// Mounter makes shm and rootfs mounts; nil mounts on the host.
	Mounter Mounter
	// Network attaches pods to the pod network; nil uses pkg/network/cni with Config.Network.
	Network Network

	// ResolvConf is copied into pods that carry no DNS config; "" is /etc/resolv.conf.
	ResolvConf string
	// ProcSys is where namespaced sysctls are written; "" is /proc/sys.
	ProcSys string
	// Offline builds a Service for `berth doctor`: no streaming, NRI or metrics servers.
	Offline bool

	// Checkpoint says whether CRIU works here; nil runs `criu check` (checkpoint_probe.go).
	Checkpoint *CheckpointSupport

	// Features are what the node supports, probed in New when left false (with real mounts
	// and namespaces). Each runtime handler's settings narrow them (runtime_handlers.go).
	Features HandlerFeatures
}

// HandlerFeatures are optional runtime handler features.
type HandlerFeatures struct {
	RecursiveReadOnlyMounts bool
	UserNamespaces          bool
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

	hostSec hostSecurity
	// limits and userns are what the node allows, decided once in New (node_limits.go,
	// sandbox_userns.go); reported in Status and applied to each spec.
	limits nodeLimits
	userns userNSSupport

	cimages    ContainerImages
	store      *store.Store
	ownsStore  bool
	names      *registrar.Registrar
	shims      ShimManager
	namespaces Namespaces
	cgroups    Cgroups
	genSpec    SpecGenerator
	mounter    Mounter
	network    Network
	netLocks   keyedLocks
	// podCheckpoints serializes CheckpointPod per pod (sandbox_checkpoint.go).
	podCheckpoints keyedLocks
	// sandboxLocks orders CreateContainer against RemovePodSandbox (sandbox_lock.go).
	sandboxLocks sandboxLocks
	// kept holds creates finished after their caller left, for the kubelet's retry (keep.go).
	kept       *keptResults
	resolvConf string
	procSys    string
	// features are the node's (probed once); handlers apply each handler's settings to them.
	features   HandlerFeatures
	handlers   runtimeHandlers
	checkpoint *checkpointProbe

	// clients maps sandbox id -> ShimClient; the lock guards only the map.
	clientsMu sync.Mutex
	clients   map[string]ShimClient

	podCIDR atomic.Value // string, from UpdateRuntimeConfig

	// streaming serves exec, attach and port-forward sessions; nil when disabled.
	streaming *streamServer
	// nri relays events to NRI plugins (nri.go); nil when disabled.
	nri *nri.Runtime

	// exits tracks the Wait goroutines so Close can wait for them.
	exits sync.WaitGroup
	stop  chan struct{}

	// Stats cache, container events and Prometheus metrics (metrics_service.go).
	stats      *statsCollector
	events     *eventBroker
	prom       *promMetrics
	metricsMu  sync.Mutex // guards metricsSrv: SetMetricsAddress may replace it
	metricsSrv *metricsServer
	telemetry  telemetryState
	kills      killMarks
}

// New builds a Service. It is not Ready until Recover has run.
func New(opts Options) (*Service, error) {
	if opts.Images == nil {
		return nil, errors.New("new cri service: no image store")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Service{
		cfg: opts.Config, images: opts.Images, log: log,
		cimages: opts.ContainerImages, store: opts.Store, names: registrar.New(), kept: newKeptResults(),
		shims: opts.Shims, namespaces: opts.Namespaces, cgroups: opts.Cgroups,
		genSpec: opts.GenerateSpec, mounter: opts.Mounter, network: opts.Network,
		resolvConf: opts.ResolvConf, procSys: opts.ProcSys,
		clients: map[string]ShimClient{}, stop: make(chan struct{}),
	}
	s.features = opts.Features
	if opts.Mounter == nil && opts.Namespaces == nil && !s.features.UserNamespaces {
		// Real mounts and namespaces only: fakes cannot host a user namespace.
		s.userns = probeUserNamespaces(opts.Config.Root, opts.Config.State, log)
		s.features.UserNamespaces = s.userns.enabled
	}
	if opts.Mounter == nil && !s.features.RecursiveReadOnlyMounts {
		s.features.RecursiveReadOnlyMounts = probeRecursiveReadOnly(opts.Config.State, log)
	}
	hs, err := newRuntimeHandlers(opts.Config.Runtime, s.features, log)
	switch {
	case err != nil && opts.Offline:
		// `berth doctor` serves no pods: a broken handler must not keep it from the ledger.
		log.Warn("runtime handlers unusable", "err", err)
	case err != nil:
		return nil, fmt.Errorf("new cri service: %w", err)
	}
	s.handlers = hs
	s.hostSec = probeHostSecurity(log, opts.Config.State)
	switch {
	case opts.Checkpoint != nil:
		s.checkpoint = knownCheckpoint(*opts.Checkpoint)
	case opts.Offline:
		s.checkpoint = knownCheckpoint(CheckpointSupport{Reason: "berth doctor does not checkpoint"})
	default:
		s.checkpoint = startCheckpointProbe(log, s.stop)
	}
	s.limits = probeNodeLimits(hostLimitsSource(s.hostSec.caps), log)
	if s.cimages == nil {
		src, ok := opts.Images.(imageSource)
		if !ok {
			return nil, errors.New("new cri service: no ContainerImages and the image store cannot serve containers")
		}
		s.cimages = containerImages{src}
	}
	if s.shims == nil {
		s.shims = newShimManager(opts.Config.ShimBinary, filepath.Join(opts.Config.State, "runc"), opts.Config.CgroupDriver)
	}
	if s.namespaces == nil {
		s.namespaces = hostNamespaces{}
	}
	if s.genSpec == nil {
		s.genSpec = spec.Generate
	}
	if s.resolvConf == "" {
		s.resolvConf = "/etc/resolv.conf"
	}
	if s.procSys == "" {
		s.procSys = "/proc/sys"
	}
	if s.mounter == nil {
		s.mounter = hostMounter{}
	}
	if s.cgroups == nil {
		cg, err := newHostCgroups(context.Background(), opts.Config.CgroupDriver)
		if err != nil {
			return nil, fmt.Errorf("new cri service: %w", err)
		}
		s.cgroups = cg
	}
	if s.network == nil {
		n, err := newCNINetwork(opts.Config, log)
		if err != nil {
			return nil, fmt.Errorf("new cri service: %w", err)
		}
		s.network = n
	}
	if s.store == nil {
		path := filepath.Join(opts.Config.Root, "cri", "meta.db")
		db, err := store.Open(path, storeLockTimeout)
		if err != nil {
			return nil, fmt.Errorf("new cri service: %w", err)
		}
		s.store, s.ownsStore = store.New(db), true
	}
	s.podCIDR.Store("")
	if err := s.restorePodCIDR(); err != nil {
		if s.ownsStore {
			s.store.Close()
		}
		return nil, fmt.Errorf("new cri service: %w", err)
	}
	if opts.Offline {
		return s, nil
	}
	if err := s.initTelemetry(); err != nil {
		s.Close()
		return nil, err
	}
	if err := s.startStreaming(); err != nil {
		s.Close()
		return nil, fmt.Errorf("new cri service: %w", err)
	}
	if err := s.newNRI(); err != nil {
		s.Close()
		return nil, fmt.Errorf("new cri service: %w", err)
	}
	return s, nil
}

// Register adds both CRI services to a gRPC server.
func (s *Service) Register(g grpc.ServiceRegistrar) {
	runtimeapi.RegisterRuntimeServiceServer(g, s)
	runtimeapi.RegisterImageServiceServer(g, s)
}

// Ready reports whether startup recovery has finished.
func (s *Service) Ready() bool { return s.ready.Load() }

// Close stops exit tracking, closes the shim connections and the store. Containers keep
// running: their shims own them.
func (s *Service) Close() error {
	select {
	case <-s.stop:
		return nil
	default:
	}
	close(s.stop)
	s.stopStreaming()
	s.nri.Stop()
	s.closeTelemetry()
	s.clientsMu.Lock()
	for id, c := range s.clients {
		c.Close()
		delete(s.clients, id)
	}
	s.clientsMu.Unlock()
	s.exits.Wait()
	if c, ok := s.cgroups.(interface{ Close() }); ok {
		c.Close()
	}
	if s.ownsStore {
		return s.store.Close()
	}
	return nil
}

// paths below the agent's root and state directories.
func (s *Service) podDir(id string) string   { return filepath.Join(s.cfg.State, "sandboxes", id) }
func (s *Service) shimDir(id string) string  { return filepath.Join(s.cfg.State, "shims", id) }
func (s *Service) netnsDir(id string) string { return filepath.Join(s.cfg.State, "netns", id) }
func (s *Service) bundleDir(id string) string {
	return filepath.Join(s.cfg.State, "containers", id)
}
func (s *Service) layerDir(id string) string { return filepath.Join(s.cfg.Root, "containers", id) }

// checkpointScratch holds CRIU's images while a checkpoint archive is being written; its
// entries are temporary (removed when the request ends; Recover wipes leftovers).
func (s *Service) checkpointScratch() string { return filepath.Join(s.cfg.State, "checkpoints") }
