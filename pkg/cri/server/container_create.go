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
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// CreateContainer mounts the container's rootfs, writes its bundle and creates it in the
// pod's shim.
func (s *Service) CreateContainer(ctx context.Context, req *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	if err := validateContainerConfig(cfg); err != nil {
		return nil, fmt.Errorf("create container: %w", err)
	}
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("create container %q: %w", cfg.GetMetadata().GetName(), err)
	}
	sbMD, sbSt := sb.Metadata(), sb.Status()
	if sbSt.State != store.SandboxReady || sbSt.Removing {
		return nil, fmt.Errorf("create container %q in sandbox %s: sandbox is not ready: %w", cfg.GetMetadata().GetName(), sb.ID(), errdefs.ErrFailedPrecondition)
	}
	name := containerName(cfg.GetMetadata(), sbMD.Config.GetMetadata())
	id := newID()
	if err := s.names.Reserve(name, id); err != nil {
		return nil, fmt.Errorf("create container %q in sandbox %s: %w", name, sb.ID(), err)
	}
	cl := &cleanups{log: s.log.With("container", id)}
	cl.push("release name", func(context.Context) error { s.names.Release(name); return nil })
	defer s.nri.BlockSync()()

	md, st, err := s.createContainer(ctx, id, name, sb, sbSt, req, cl)
	if err == nil {
		_, err = s.store.Containers.Add(id, md, st)
	}
	if err != nil {
		cl.run(ctx)
		return nil, fmt.Errorf("create container %q in sandbox %s: %w", name, sb.ID(), err)
	}
	s.events.container(id)
	s.nriPostCreateContainer(ctx, id)
	return &runtimeapi.CreateContainerResponse{ContainerId: id}, nil
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
	return validateImageMounts(cfg)
}

// containerName is the kubelet's unique key for a container attempt in a pod.
func containerName(c *runtimeapi.ContainerMetadata, pod *runtimeapi.PodSandboxMetadata) string {
	return fmt.Sprintf("%s_%s_%s_%s_%d", c.GetName(), pod.GetName(), pod.GetNamespace(), pod.GetUid(), c.GetAttempt())
}

func (s *Service) createContainer(ctx context.Context, id, name string, sb *store.Sandbox, sbSt store.SandboxStatus, req *runtimeapi.CreateContainerRequest, cl *cleanups) (store.ContainerMetadata, store.ContainerStatus, error) {
	cfg := req.GetConfig()
	sbMD := sb.Metadata()
	imageName := cfg.GetImage().GetImage()
	img, err := s.cimages.Resolve(ctx, imageName)
	if err != nil {
		if errdefs.IsNotFound(err) {
			return store.ContainerMetadata{}, store.ContainerStatus{}, fmt.Errorf("image %q not found: %w", imageName, errdefs.ErrNotFound)
		}
		return store.ContainerMetadata{}, store.ContainerStatus{}, fmt.Errorf("resolve image %q: %w", imageName, err)
	}
	md := store.ContainerMetadata{
		ID: id, Name: name, SandboxID: sb.ID(), Config: store.ContainerConfig{ContainerConfig: cfg},
		CreatedAt: time.Now(), ImageName: imageName, ImageID: img.ID, StopSignal: img.Config.StopSignal,
		Bundle: s.bundleDir(id), LayerDir: s.layerDir(id),
		Cgroup: s.cgroups.ContainerPath(sbMD.CgroupParent, id),
	}
	md.Rootfs = filepath.Join(md.Bundle, "rootfs")
	if dir, p := sbMD.Config.GetLogDirectory(), cfg.GetLogPath(); dir != "" && p != "" {
		md.LogPath = filepath.Join(dir, p)
	}
	st := store.ContainerStatus{State: store.ContainerCreated, Resources: store.Resources{LinuxContainerResources: cfg.GetLinux().GetResources()}}

	var imageVols map[string]string
	steps := []struct {
		name string
		fn   func() error
	}{
		{"lease image", func() error { return s.leaseImage(ctx, md, cl) }},
		{"mount rootfs", func() error { return s.mountRootfs(ctx, md, sbMD, cl) }},
		{"mount image volumes", func() (err error) { imageVols, err = s.mountImageVolumes(ctx, md, sbMD, cl); return err }},
		{"prepare mounts", func() error { return prepareHostPaths(cfg, md.LogPath) }},
		{"write spec", func() error { return s.writeSpec(ctx, &md, sbMD, sbSt, img, imageVols, cl) }},
		{"create in shim", func() error { return s.shimCreate(ctx, md, cl) }},
	}
	for _, step := range steps {
		if err := step.fn(); err != nil {
			return md, st, fmt.Errorf("%s: %w", step.name, err)
		}
	}
	return md, st, nil
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
		return s.mounter.Mount("overlay", md.Rootfs, "overlay", 0, data)
	})
}

// prepareHostPaths creates missing bind-mount sources as directories, as Docker and
// containerd do, and the directory of the CRI log file.
func prepareHostPaths(cfg *runtimeapi.ContainerConfig, logPath string) error {
	for _, m := range cfg.GetMounts() {
		p := m.GetHostPath()
		if p == "" {
			continue
		}
		if !filepath.IsAbs(p) {
			return fmt.Errorf("mount host path %q is not absolute: %w", p, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(p); os.IsNotExist(err) {
			if err := os.MkdirAll(p, 0o755); err != nil {
				return fmt.Errorf("create mount source %s: %w", p, err)
			}
		}
	}
	if logPath != "" {
		if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
			return fmt.Errorf("create log directory: %w", err)
		}
	}
	return nil
}

func (s *Service) writeSpec(ctx context.Context, md *store.ContainerMetadata, sbMD store.SandboxMetadata, sbSt store.SandboxStatus, img ImageInfo, imageVols map[string]string, cl *cleanups) error {
	cfg := md.Config.ContainerConfig
	info := sandboxInfo(sbMD, sbSt)
	opts := spec.Options{
		RootfsPath: md.Rootfs, CgroupsPath: md.Cgroup, ImageName: md.ImageName,
		CgroupV2: s.cgroups.V2(), CgroupNS: s.cgroups.V2(), NoHugetlb: !s.cgroups.Hugetlb(),
		ImageVolumes: imageVols,
	}
	s.hostSec.apply(&opts)
	if cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetPid() == runtimeapi.NamespaceMode_TARGET {
		target, err := s.store.Containers.Resolve(cfg.GetLinux().GetSecurityContext().GetNamespaceOptions().GetTargetId())
		if err != nil {
			return fmt.Errorf("pid namespace target: %w", err)
		}
		pid := target.Status().Pid
		if pid == 0 {
			return fmt.Errorf("pid namespace target %s is not running: %w", target.ID(), errdefs.ErrFailedPrecondition)
		}
		opts.TargetPIDNSPath = fmt.Sprintf("/proc/%d/ns/pid", pid)
	}
	sp, err := s.genSpec(md.ID, cfg, info, img.Config, opts)
	if err != nil {
		return err
	}
	if err := s.nriCreateContainer(ctx, *md, sbMD, sbSt, sp, cl); err != nil {
		return err
	}
	if sp.Process != nil {
		u := sp.Process.User
		md.User = store.User{UID: u.UID, GID: u.GID, SupplementalGroups: u.AdditionalGids, Username: u.Username}
	}
	b, err := json.Marshal(sp)
	if err != nil {
		return fmt.Errorf("encode spec: %w", err)
	}
	return os.WriteFile(filepath.Join(md.Bundle, "config.json"), b, 0o600)
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

func (s *Service) shimCreate(ctx context.Context, md store.ContainerMetadata, cl *cleanups) error {
	c, err := s.client(md.SandboxID)
	if err != nil {
		return err
	}
	cfg := md.Config.ContainerConfig
	_, err = c.Create(ctx, ShimCreateRequest{
		ID: md.ID, Bundle: md.Bundle, LogPath: md.LogPath,
		Stdin: cfg.GetStdin(), StdinOnce: cfg.GetStdinOnce(), Tty: cfg.GetTty(),
	})
	if err != nil {
		return err
	}
	cl.push("delete from shim", func(ctx context.Context) error { return killAndDelete(ctx, c, md.ID) })
	return nil
}
