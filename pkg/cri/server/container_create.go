package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// CreateContainer mounts the container's rootfs, writes its bundle and creates it in the
// pod's shim. Everything the request asks for is checked before anything is created.
func (s *Service) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if err := validateContainerConfig(cfg); err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
	}
	// RemovePodSandbox takes this lock exclusively: a create either finishes before the
	// removal starts (which then removes the container too) or finds the sandbox gone.
	defer s.sandboxLocks.rlock(sb.ID())()
	sb, sbSt, err := s.readySandbox(sb.ID())
	if err != nil {
		return nil, fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
	}
	sbMD := sb.Metadata()
	name := containerName(cfg.GetMetadata(), sbMD.Config.GetMetadata())
	plan, err := s.planContainer(cfg, sbMD)
	if err != nil {
		return nil, fmt.Errorf("create container %q in sandbox %s: %w", name, sb.ID(), err)
	}
	// The kubelet's retry of a create that finished after it gave up (keep.go).
	if id, err := s.collectKept(ctx, name, req); err != nil || id != "" {
		if err != nil {
			return nil, fmt.Errorf("create container %q in sandbox %s: %w", name, sb.ID(), err)
		}
		return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
	}
	id := newID()
	if err := s.names.Reserve(name, id); err != nil {
		return nil, fmt.Errorf("create container %q in sandbox %s: %w", name, sb.ID(), err)
	}
	cl := &cleanups{log: s.log.With("container", id)}
	cl.push("release name", func(context.Context) error { s.names.Release(name); return nil })
	op := s.kept.begin(name, id, req)
	defer s.kept.end(op)
	wctx, cancel := detach(ctx)
	defer cancel()
	defer s.nri.BlockSync()() // from the NRI event until the container is stored: see nri.go

	md, st, err := s.createContainer(wctx, id, name, sb, sbSt, plan, req, cl)
	finish := func(ctx context.Context) error { return s.storeContainer(ctx, md, st) }
	if err == nil && ctx.Err() != nil {
		s.kept.park(op, func(ctx context.Context) error {
			defer s.nri.BlockSync()()
			return finish(ctx)
		}, cl.run)
		return nil, fmt.Errorf("create container %q in sandbox %s: created as %s after the caller left, kept for its retry: %w", name, sb.ID(), id, ctx.Err())
	}
	if err == nil {
		err = finish(wctx)
	}
	if err != nil {
		cl.run(ctx)
		return nil, fmt.Errorf("create container %q in sandbox %s: %w", name, sb.ID(), err)
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
}

// storeContainer records a created container, which makes it visible, and tells NRI plugins.
func (s *Service) storeContainer(ctx context.Context, md store.ContainerMetadata, st store.ContainerStatus) error {
	if _, err := s.store.Containers.Add(md.ID, md, st); err != nil {
		return err
	}
	s.events.container(md.ID)
	s.nriPostCreateContainer(ctx, md.ID)
	return nil
}

// readySandbox reads the sandbox again under its lock: a removal may have finished while the
// create waited for it.
func (s *Service) readySandbox(id string) (*store.Sandbox, store.SandboxStatus, error) {
	sb, err := s.store.Sandboxes.Get(id)
	if err != nil {
		return nil, store.SandboxStatus{}, err
	}
	st := sb.Status()
	if st.State != store.SandboxReady || st.Removing {
		return nil, st, fmt.Errorf("sandbox %s is not ready: %w", id, errdefs.ErrFailedPrecondition)
	}
	return sb, st, nil
}

func validateContainerConfig(cfg *runtimeapi.ContainerConfig) error {
	switch {
	case cfg == nil:
		return fmt.Errorf("no config: %w", errdefs.ErrInvalidArgument)
	case cfg.GetMetadata().GetName() == "":
		return fmt.Errorf("metadata.name is required: %w", errdefs.ErrInvalidArgument)
	case cfg.GetImage().GetImage() == "":
		return fmt.Errorf("image is required: %w", errdefs.ErrInvalidArgument)
	}
	if err := validateMountSources(cfg); err != nil {
		return err
	}
	return validateImageMounts(cfg)
}

// createPlan is what the checks of a request worked out before anything is created.
type createPlan struct {
	logDir, logRel string // the pod's log directory and the log file below it; "" = no log
	targetPIDNS    string // the pid namespace of the target container (pid mode TARGET)
}

// planContainer checks the parts of the request that depend on its sandbox.
func (s *Service) planContainer(cfg *runtimeapi.ContainerConfig, sbMD store.SandboxMetadata) (createPlan, error) {
	plan := createPlan{logDir: sbMD.Config.GetLogDirectory()}
	rel, err := containerLogPath(plan.logDir, cfg.GetLogPath())
	if err != nil {
		return plan, err
	}
	plan.logRel = rel
	if plan.targetPIDNS, err = s.pidTarget(cfg, sbMD.ID); err != nil {
		return plan, err
	}
	return plan, nil
}

// pidTarget finds the pid namespace a container with pid mode TARGET joins. The CRI's target is
// a container of the same pod (ephemeral debug containers): one of another pod is refused as
// unknown, or a pod could enter any other pod's processes by guessing an id.
func (s *Service) pidTarget(cfg *runtimeapi.ContainerConfig, sandboxID string) (string, error) {
	nso := cfg.GetLinux().GetSecurityContext().GetNamespaceOptions()
	if nso.GetPid() != runtimeapi.NamespaceMode_TARGET {
		return "", nil
	}
	tid := nso.GetTargetId()
	var target *store.Container
	for _, c := range s.store.ContainersOf(sandboxID) {
		if c.ID() == tid {
			target = c
		}
	}
	if target == nil {
		return "", fmt.Errorf("pid namespace target %q is not a container of sandbox %s: %w", tid, sandboxID, errdefs.ErrNotFound)
	}
	pid := target.Status().Pid
	if pid == 0 {
		return "", fmt.Errorf("pid namespace target %s is not running: %w", target.ID(), errdefs.ErrFailedPrecondition)
	}
	return fmt.Sprintf("/proc/%d/ns/pid", pid), nil
}

// containerName is the kubelet's unique key for a container attempt in a pod.
func containerName(c *runtimeapi.ContainerMetadata, pod *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), pod.GetName(), pod.GetNamespace(), pod.GetUid(), c.GetAttempt())
}

func (s *Service) createContainer(ctx context.Context, id, name string, sb *store.Sandbox, sbSt store.SandboxStatus, plan createPlan, req *runtimeapi.CreateContainerRequest, cl *cleanups) (store.ContainerMetadata, store.ContainerStatus, error) {
	cfg := req.GetConfig()
	sbMD := sb.Metadata()
	imageName := cfg.GetImage().GetImage()
	rs, img, imageName, err := s.containerImage(ctx, id, cfg, imageName, cl)
	if err != nil {
		return store.ContainerMetadata{}, store.ContainerStatus{}, err
	}
	md := store.ContainerMetadata{
		ID: id, Name: name, SandboxID: sb.ID(), Config: store.ContainerConfig{ContainerConfig: cfg},
		CreatedAt: time.Now(), ImageName: imageName, ImageID: img.ID, StopSignal: img.Config.StopSignal,
		Bundle: s.bundleDir(id), LayerDir: s.layerDir(id),
		Cgroup: s.cgroups.ContainerCgroup(sbMD.CgroupParent, id).Path,
	}
	md.Rootfs = filepath.Join(md.Bundle, "rootfs")
	if plan.logRel != "" {
		md.LogPath = filepath.Join(plan.logDir, plan.logRel)
	}
	st := store.ContainerStatus{State: store.ContainerCreated, Resources: store.Resources{LinuxContainerResources: cfg.GetLinux().GetResources()}}

	var imageVols map[string]string
	var sp *specs.Spec
	steps := []runStep{
		{"lease image", func() error { return s.leaseImage(ctx, md, cl) }},
		{"mount rootfs", func() error { return s.mountRootfs(ctx, md, sbMD, cl) }},
		{"apply checkpoint rootfs", func() error {
			if rs == nil {
				return nil
			}
			return s.applyRestoreRootfs(ctx, rs, md)
		}},
		{"mount image volumes", func() (err error) { imageVols, err = s.mountImageVolumes(ctx, md, sbMD, cl); return err }},
		{"create anonymous volumes", func() (err error) { md.Volumes, err = s.createAnonymousVolumes(md, img.Config.Volumes, cl); return err }},
		// The spec generator checks the rest of the request (mounts, security, devices):
		// host paths are created only once it accepted it.
		{"generate spec", func() (err error) { sp, err = s.buildSpec(ctx, &md, sbMD, sbSt, img, imageVols, plan, cl); return err }},
		{"create host paths", func() (err error) { md.LogPath, err = s.createHostPaths(cfg, plan, cl); return err }},
		{"write spec", func() error { return writeSpecFile(md.Bundle, sp) }},
		{"record cgroup", func() error { return s.recordContainerScope(md, cl) }},
		{"create in shim", func() error { return s.shimCreate(ctx, md, rs, cl) }},
	}
	return md, st, s.runSteps("CreateContainer", steps)
}

// recordContainerScope records a container's systemd scope (the shim has systemd create it)
// so that removal, rollback and startup reconcile stop it: a scope is a unit of its own that
// no removal of a kubelet-owned pod slice reaches, should its shim die with the container
// running. A cgroupfs container cgroup needs no record: it goes with its pod's.
func (s *Service) recordContainerScope(md store.ContainerMetadata, cl *cleanups) error {
	if !cgroups.IsUnitPath(md.Cgroup) {
		return nil
	}
	return s.acquire(cl, store.Resource{Kind: store.KindCgroup, Path: md.Cgroup, Owner: md.ID}, func() error { return nil })
}

// containerImage resolves the request's image; for a checkpoint archive or checkpoint image
// (container_restore.go) it extracts the checkpoint and resolves its base image, whose name
// the container then reports.
func (s *Service) containerImage(ctx context.Context, id string, cfg *runtimeapi.ContainerConfig, imageName string, cl *cleanups) (*restoreSource, ImageInfo, string, error) {
	isCkpt, err := isCheckpointImage(imageName)
	if err != nil {
		return nil, ImageInfo{}, "", err
	}
	if isCkpt {
		rs, err := s.prepareRestore(ctx, id, cfg, imageName, cl)
		if err != nil {
			return nil, ImageInfo{}, "", err
		}
		img, name, err := s.baseImage(ctx, rs)
		return rs, img, name, err
	}
	img, err := s.cimages.Resolve(ctx, imageName)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return nil, ImageInfo{}, "", fmt.Errorf("image %q not found: %w", imageName, errdefs.ErrNotFound)
		}
		return nil, ImageInfo{}, "", fmt.Errorf("resolve image %q: %w", imageName, err)
	}
	if isCheckpointImageInfo(img) {
		rs, err := s.prepareImageRestore(ctx, id, cfg, imageName, img, cl)
		if err != nil {
			return nil, ImageInfo{}, "", err
		}
		base, name, err := s.baseImage(ctx, rs)
		return rs, base, name, err
	}
	return nil, img, imageName, nil
}

func (s *Service) leaseImage(ctx context.Context, md store.ContainerMetadata, cl *cleanups) error {
	return s.acquire(cl, store.Resource{Kind: store.KindLease, Path: md.ImageID, Owner: md.ID}, func() error {
		return s.cimages.Lease(ctx, md.ID, md.ImageID)
	})
}

// mountRootfs mounts the image's snapshots under a private writable layer. An image without
// layers still needs a lower directory: overlayfs refuses an empty lowerdir. In a pod with a
// user namespace the layers are idmapped first (container_idmap.go).
func (s *Service) mountRootfs(ctx context.Context, md store.ContainerMetadata, sbMD store.SandboxMetadata, cl *cleanups) error {
	lowers, err := s.cimages.Lowers(ctx, md.ImageID)
	if err != nil {
		return fmt.Errorf("image %s snapshots: %w", md.ImageID, err)
	}
	upper, work := filepath.Join(md.LayerDir, "upper"), filepath.Join(md.LayerDir, "work")
	err = s.acquire(cl, store.Resource{Kind: store.KindDir, Path: md.LayerDir, Owner: md.ID}, func() error {
		for _, d := range []string{upper, work} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				return err
			}
		}
		if len(lowers) == 0 {
			empty := filepath.Join(md.LayerDir, "empty")
			lowers = []string{empty}
			return os.MkdirAll(empty, 0o755)
		}
		return nil
	})
	if err != nil {
		return err
	}
	err = s.acquire(cl, store.Resource{Kind: store.KindDir, Path: md.Bundle, Owner: md.ID}, func() error {
		return os.MkdirAll(md.Rootfs, 0o755)
	})
	if err != nil {
		return err
	}
	if lowers, err = s.idmapRootfs(md, sbMD, lowers, upper, work, cl); err != nil {
		return err
	}
	data := fmt.Sprintf("lowerdir=%s,upperdir=%s,workdir=%s", strings.Join(lowers, ":"), upper, work)
	return s.acquire(cl, store.Resource{Kind: store.KindMount, Path: md.Rootfs, Owner: md.ID}, func() error {
		if err := s.mounter.Mount("overlay", md.Rootfs, "overlay", 0, data); err != nil {
			return err
		}
		return ensureWritable(md.Rootfs)
	})
}

// buildSpec generates the container's spec and lets NRI plugins adjust it.
func (s *Service) buildSpec(ctx context.Context, md *store.ContainerMetadata, sbMD store.SandboxMetadata, sbSt store.SandboxStatus, img ImageInfo, imageVols map[string]string, plan createPlan, cl *cleanups) (*specs.Spec, error) {
	cfg := md.Config.ContainerConfig
	info := sandboxInfo(sbMD, sbSt)
	handler, err := s.handlers.lookup(sbMD.RuntimeHandler)
	if err != nil {
		// The pod outlived its handler's configuration (the agent restarted without it):
		// its containers must not fall back to other defaults.
		return nil, fmt.Errorf("pod's %v: %w", err, errdefs.ErrFailedPrecondition)
	}
	opts := spec.Options{
		RootfsPath: md.Rootfs, CgroupsPath: s.cgroups.ContainerCgroup(sbMD.CgroupParent, md.ID).Runtime, ImageName: md.ImageName,
		CgroupV2: s.cgroups.V2(), CgroupNS: s.cgroups.V2(), NoHugetlb: !s.cgroups.Hugetlb(),
		ImageVolumes: imageVols, AnonymousVolumes: md.Volumes, TargetPIDNSPath: plan.targetPIDNS,
		RuntimeDefaultSeccomp: handler.seccompDefault,
	}
	s.hostSec.apply(&opts)
	sp, err := s.genSpec(md.ID, cfg, info, img.Config, opts)
	if err != nil {
		return nil, err
	}
	if err := s.nriCreateContainer(ctx, *md, sbMD, sbSt, sp, cl); err != nil {
		return nil, err
	}
	md.NotHonoured = s.fitToNode(md.ID, cfg, sp)
	if handler.ociVersion != "" {
		sp.Version = handler.ociVersion
	}
	if sp.Process != nil {
		u := sp.Process.User
		md.User = store.User{UID: u.UID, GID: u.GID, SupplementalGroups: u.AdditionalGids, Username: u.Username}
	}
	return sp, nil
}

// fitToNode adjusts what NRI and the spec generator left in sp to what the node allows
// (decided at startup: nodeLimits, userNSSupport) and returns what was not honoured.
func (s *Service) fitToNode(id string, cfg *runtimeapi.ContainerConfig, sp *specs.Spec) []string {
	notes := s.limits.adjust(sp)
	notes = append(notes, s.userns.idmapUnsupported(sp, s.cfg.State)...)
	if n := hugepageNote(cfg.GetLinux().GetResources(), s.cgroups.Hugetlb()); n != "" {
		notes = append(notes, n)
	}
	if len(notes) > 0 {
		s.log.Info("container settings the node cannot honour", "id", id, "not_honoured", notes)
	}
	return notes
}

func writeSpecFile(bundle string, sp *specs.Spec) error {
	b, err := json.Marshal(sp)
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	return os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600)
}

// sandboxInfo is what the spec generator needs to know of the pod.
func sandboxInfo(md store.SandboxMetadata, st store.SandboxStatus) spec.SandboxInfo {
	pod := md.Config.GetMetadata()
	info := spec.SandboxInfo{
		ID: md.ID, Name: pod.GetName(), Namespace: pod.GetNamespace(), UID: pod.GetUid(),
		Hostname: md.Hostname, NetNSPath: md.NetNS, IPCNSPath: md.IPCNS, UTSNSPath: md.UTSNS,
		CgroupParent: md.CgroupParent,
		HostsPath:    filepath.Join(md.PodDir, "hosts"), HostnamePath: filepath.Join(md.PodDir, "hostname"),
		ResolvPath: filepath.Join(md.PodDir, "resolv.conf"), ShmPath: md.ShmPath,
		Sysctls:         md.Config.GetLinux().GetSysctls(),
		SecurityContext: md.Config.GetLinux().GetSecurityContext(),
		UserNSPath:      podUserNSPath(md),
	}
	if st.Pid > 0 {
		info.PIDNSPath = fmt.Sprintf("/proc/%d/ns/pid", st.Pid)
	}
	return info
}

func (s *Service) shimCreate(ctx context.Context, md store.ContainerMetadata, rs *restoreSource, cl *cleanups) error {
	c, err := s.client(md.SandboxID)
	if err != nil {
		return err
	}
	cfg := md.Config.ContainerConfig
	req := ShimCreateRequest{
		ID: md.ID, Bundle: md.Bundle, LogPath: md.LogPath,
		Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), Tty: cfg.GetTty(),
	}
	if rs != nil {
		req.RestoreImages, req.RestoreWork = rs.imagesDir(), rs.workDir()
	}
	_, err = c.Create(ctx, req)
	if err != nil {
		return err
	}
	cl.push("delete from shim", func(ctx context.Context) error { return killAndDelete(ctx, c, md.ID) })
	return nil
}
