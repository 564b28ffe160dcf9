package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// shmSize is the pod /dev/shm size; 64 MiB is Docker's default, which images expect.
const shmSize = 64 << 20

// RunPodSandbox creates a pod's namespaces, cgroup, files and shim, and starts its init.
func (s *Service) RunPodSandbox(ctx context.Context, req *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := req.GetConfig()
	if err := validatePodConfig(cfg); err != nil {
		return nil, fmt.Errorf("run pod sandbox: %w", err)
	}
	name := sandboxName(cfg.GetMetadata())
	handler, err := s.handlers.lookup(req.GetRuntimeHandler())
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	sysctls, err := validateSysctls(cfg)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	userns, err := podUserNS(cfg)
	if err != nil {
		return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	if err := handler.checkPod(userns.Enabled()); err != nil {
		return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	// The kubelet's retry of a create that finished after it gave up (keep.go).
	if id, err := s.collectKept(ctx, name, req); err != nil || id != "" {
		if err != nil {
			return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
		}
		return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
	}
	id := newID()
	if err := s.names.Reserve(name, id); err != nil {
		return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	cl := &cleanups{log: s.log.With("sandbox", id)}
	cl.push("release name", func(context.Context) error { s.names.Release(name); return nil })
	op := s.kept.begin(name, id, req)
	defer s.kept.end(op)
	wctx, cancel := detach(ctx)
	defer cancel()

	md, st, err := s.runSandbox(wctx, id, name, req, sysctls, cl)
	finish := func(ctx context.Context) error { return s.storeSandbox(ctx, md, st, cl) }
	if err == nil && ctx.Err() != nil {
		s.kept.park(op, finish, cl.run)
		return nil, fmt.Errorf("run pod sandbox %q: created as %s after the caller left, kept for its retry: %w", name, id, ctx.Err())
	}
	if err == nil {
		err = finish(wctx)
	}
	if err != nil {
		cl.run(ctx)
		return nil, fmt.Errorf("run pod sandbox %q: %w", name, err)
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: id}, nil
}

// storeSandbox announces a built pod to NRI plugins and records it, which makes it visible.
func (s *Service) storeSandbox(ctx context.Context, md store.SandboxMetadata, st store.SandboxStatus, cl *cleanups) error {
	defer s.nri.BlockSync()() // from the NRI event until the pod is stored: see nri.go
	if err := s.nriRunPodSandbox(ctx, md, st, cl); err != nil {
		return err
	}
	if _, err := s.store.Sandboxes.Add(md.ID, md, st); err != nil {
		return err
	}
	s.events.sandbox(md.ID)
	return nil
}

func validatePodConfig(cfg *runtimeapi.PodSandboxConfig) error {
	md := cfg.GetMetadata()
	switch {
	case cfg == nil:
		return fmt.Errorf("no config: %w", errdefs.ErrInvalidArgument)
	case md.GetName() == "":
		return fmt.Errorf("metadata.name is required: %w", errdefs.ErrInvalidArgument)
	case md.GetNamespace() == "":
		return fmt.Errorf("metadata.namespace is required: %w", errdefs.ErrInvalidArgument)
	case md.GetUid() == "":
		return fmt.Errorf("metadata.uid is required: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// sandboxName is the kubelet's unique key for a pod attempt.
func sandboxName(md *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%d", md.GetName(), md.GetNamespace(), md.GetUid(), md.GetAttempt())
}

func namespaceOptions(cfg *runtimeapi.PodSandboxConfig) *runtimeapi.NamespaceOption {
	return cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
}

func hostNetwork(cfg *runtimeapi.PodSandboxConfig) bool {
	return namespaceOptions(cfg).GetNetwork() == runtimeapi.NamespaceMode_NODE
}

func hostIPC(cfg *runtimeapi.PodSandboxConfig) bool {
	return namespaceOptions(cfg).GetIpc() == runtimeapi.NamespaceMode_NODE
}

// runSandbox builds the pod step by step; each step pushes its undo onto cl.
func (s *Service) runSandbox(ctx context.Context, id, name string, req *runtimeapi.RunPodSandboxRequest, sysctls map[string]string, cl *cleanups) (store.SandboxMetadata, store.SandboxStatus, error) {
	cfg := req.GetConfig()
	md := store.SandboxMetadata{
		ID: id, Name: name, Config: store.PodConfig{PodSandboxConfig: cfg},
		RuntimeHandler: req.GetRuntimeHandler(), CreatedAt: time.Now(),
		PodDir: s.podDir(id), ShimDir: s.shimDir(id),
	}
	st := store.SandboxStatus{State: store.SandboxReady}
	if !hostNetwork(cfg) {
		md.Hostname = cfg.GetHostname()
	}
	// The pod network and the pod's processes need only the namespaces: CNI ADD (plugin
	// processes and their locks) runs beside the cgroup, shim and pod init, so a pod starts
	// in the longer of the two instead of their sum. The network branch works on its own
	// copies and cleanup stack, merged once both are done, rollback or not.
	first := []runStep{
		{"write pod files", func() error { return s.setupPodDir(&md, cfg, cl) }},
		{"mount shm", func() error { return s.setupShm(&md, cfg, cl) }},
		{"create namespaces", func() error { return s.setupNamespaces(&md, cfg, cl) }},
	}
	if err := s.runSteps("RunPodSandbox", first); err != nil {
		return md, st, err
	}
	netMD, netSt, netCl := md, st, &cleanups{log: cl.log}
	network := []runStep{
		{"set up network", func() error { return s.setupNetwork(ctx, &netMD, &netSt, netCl) }},
		// After ADD: a sysctl may name an interface the plugins made (net.ipv4.conf.eth0.*).
		{"apply sysctls", func() error { return s.applySysctls(netMD, sysctls) }},
	}
	pod := []runStep{
		{"create pod cgroup", func() error { return s.setupCgroup(&md, cfg, cl) }},
		{"start shim", func() error { return s.setupShim(ctx, md, cl) }},
		{"start pod init", func() error { return s.setupPodInit(ctx, md, &st, cl) }},
	}
	netErr := make(chan error, 1)
	go func() { netErr <- s.runSteps("RunPodSandbox", network) }()
	podErr := s.runSteps("RunPodSandbox", pod)
	err := errors.Join(podErr, <-netErr)
	cl.adopt(netCl)
	st.PodIP = netSt.PodIP
	return md, st, err
}

// runStep is one step of building a pod or a container; each pushes its undo onto a cleanup
// stack.
type runStep struct {
	name string
	fn   func() error
}

// runSteps runs the steps of operation op in order, timing each (see timeStep), and stops
// at the first failure, which names its step.
func (s *Service) runSteps(op string, steps []runStep) error {
	for _, step := range steps {
		if err := s.timeStep(op, step.name, step.fn); err != nil {
			return fmt.Errorf("%s: %w", step.name, err)
		}
	}
	return nil
}

// timeStep runs one step of an operation and records its wall time in
// berth_operation_step_duration_seconds: where a pod's start or stop spends its time, on a
// live node, without a profiler.
func (s *Service) timeStep(op, step string, fn func() error) error {
	start := time.Now()
	err := fn()
	s.prom.steps.WithLabelValues(op, step).Observe(time.Since(start).Seconds())
	return err
}

func (s *Service) setupPodDir(md *store.SandboxMetadata, cfg *runtimeapi.PodSandboxConfig, cl *cleanups) error {
	dir := md.PodDir
	return s.acquire(cl, store.Resource{Kind: store.KindDir, Path: dir, Owner: md.ID}, func() error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		hostname := md.Hostname
		if hostname == "" {
			h, err := os.Hostname()
			if err != nil {
				return fmt.Errorf("read host name: %w", err)
			}
			hostname = h
		}
		if err := os.WriteFile(filepath.Join(dir, "hostname"), []byte(hostname+"\n"), 0o644); err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, "hosts"), hostsFile(hostname, ""), 0o644); err != nil {
			return err
		}
		resolv, err := resolvConf(cfg.GetDnsConfig(), s.resolvConf)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, "resolv.conf"), resolv, 0o644)
	})
}

// setupShm gives the pod its own /dev/shm so that pods cannot see each other's shared
// memory; with host IPC the host's /dev/shm is shared instead, as the kubelet expects.
func (s *Service) setupShm(md *store.SandboxMetadata, cfg *runtimeapi.PodSandboxConfig, cl *cleanups) error {
	if hostIPC(cfg) {
		md.ShmPath = "/dev/shm"
		return nil
	}
	shm := filepath.Join(md.PodDir, "shm")
	md.ShmPath = shm
	return s.acquire(cl, store.Resource{Kind: store.KindMount, Path: shm, Owner: md.ID}, func() error {
		if err := os.MkdirAll(shm, 0o755); err != nil {
			return err
		}
		return s.mounter.Mount("shm", shm, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC,
			fmt.Sprintf("mode=1777,size=%d", shmSize))
	})
}

// setupNamespaces pins the pod's net, ipc and uts namespaces, and its user namespace when it
// has one (sandbox_userns.go). UTS follows the network: a host-network pod keeps the host's
// name, as in Kubernetes.
func (s *Service) setupNamespaces(md *store.SandboxMetadata, cfg *runtimeapi.PodSandboxConfig, cl *cleanups) error {
	userns, err := podUserNS(cfg)
	if err != nil {
		return err
	}
	opts := NamespaceOptions{
		Dir: s.netnsDir(md.ID), Net: !hostNetwork(cfg), IPC: !hostIPC(cfg), UTS: !hostNetwork(cfg),
		Hostname: md.Hostname, UserNS: userns,
	}
	if !opts.Net && !opts.IPC && !opts.UTS {
		return nil
	}
	if err := s.store.AddResource(store.Resource{Kind: store.KindDir, Path: opts.Dir, Owner: md.ID}); err != nil {
		return err
	}
	dirRes := store.Resource{Kind: store.KindDir, Path: opts.Dir, Owner: md.ID}
	cl.push("netns dir", func(ctx context.Context) error { return s.release(ctx, dirRes) })
	for kind, want := range map[string]bool{"net": opts.Net, "ipc": opts.IPC, "uts": opts.UTS, "user": userns.Enabled()} {
		if !want {
			continue
		}
		r := store.Resource{Kind: store.KindNetNS, Path: filepath.Join(opts.Dir, kind), Owner: md.ID}
		if err := s.store.AddResource(r); err != nil {
			return err
		}
		cl.push("unpin "+kind, func(ctx context.Context) error { return s.release(ctx, r) })
	}
	paths, err := s.namespaces.Create(opts)
	if err != nil {
		return err
	}
	md.NetNS, md.IPCNS, md.UTSNS = paths.Net, paths.IPC, paths.UTS
	return nil
}

// setupCgroup creates the pod cgroup. Only a cgroup berth chose itself (no cgroup_parent)
// is recorded for removal: a kubelet-given parent belongs to the kubelet, which removes it.
func (s *Service) setupCgroup(md *store.SandboxMetadata, cfg *runtimeapi.PodSandboxConfig, cl *cleanups) error {
	parent := cfg.GetLinux().GetCgroupParent()
	path, err := s.cgroups.NormalizeParent(parent)
	if err != nil {
		return err
	}
	if parent != "" {
		md.CgroupParent = path
		return s.cgroups.EnsurePod(path)
	}
	md.CgroupParent = s.cgroups.PodPath(path, md.ID)
	return s.acquire(cl, store.Resource{Kind: store.KindCgroup, Path: md.CgroupParent, Owner: md.ID}, func() error {
		return s.cgroups.EnsurePod(md.CgroupParent)
	})
}

func (s *Service) setupShim(ctx context.Context, md store.SandboxMetadata, cl *cleanups) error {
	return s.acquire(cl, store.Resource{Kind: store.KindShim, Path: md.ShimDir, Owner: md.ID}, func() error {
		if err := os.MkdirAll(md.ShimDir, 0o700); err != nil {
			return err
		}
		handler, err := s.handlers.lookup(md.RuntimeHandler)
		if err != nil {
			return err
		}
		c, err := s.shims.Start(ctx, ShimStartRequest{SandboxID: md.ID, Dir: md.ShimDir,
			OCIRuntime: handler.ociRuntime(), OCIShimCgroups: handler.shimCgroups})
		if err != nil {
			return err
		}
		s.setClient(md.ID, c)
		return nil
	})
}

// setupPodInit starts the init that holds the pod's pid namespace when containers share it
// (pid mode POD, the proto default). The init lives in a leaf cgroup of its own below the
// pod's, recorded for removal even under a kubelet-given parent (berth made it): cgroup v2
// allows processes only in leaves once the pod's containers need controllers.
func (s *Service) setupPodInit(ctx context.Context, md store.SandboxMetadata, st *store.SandboxStatus, cl *cleanups) error {
	if namespaceOptions(md.Config.PodSandboxConfig).GetPid() != runtimeapi.NamespaceMode_POD {
		return nil
	}
	// The pod-level seccomp profile filters the init, as it does a pause container.
	filter, err := spec.PodSeccomp(md.Config.GetLinux().GetSecurityContext(), nil)
	if err != nil {
		return err
	}
	c, err := s.client(md.ID)
	if err != nil {
		return err
	}
	leaf := s.cgroups.PodInitCgroup(md.CgroupParent, md.ID)
	if err := s.acquire(cl, store.Resource{Kind: store.KindCgroup, Path: leaf.Path, Owner: md.ID}, func() error {
		return s.cgroups.EnsureLeaf(leaf.Path)
	}); err != nil {
		return err
	}
	pid, err := c.StartPodInit(ctx, ShimPodInitRequest{
		NetNS: md.NetNS, IPCNS: md.IPCNS, UTSNS: md.UTSNS, CgroupPath: leaf.Runtime,
		UserNS: podUserNSPath(md), Seccomp: filter,
	})
	if err != nil {
		return err
	}
	st.Pid = pid
	return nil
}
