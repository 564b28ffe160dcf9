package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/nri"
)

// NRI: plugins see every pod and container state change and may adjust containers at
// creation. The hooks below are nil-safe (s.nri is nil when NRI is off) and take records,
// so each call site is one line. Notifications after the fact only log failures: the
// state change has happened and the kubelet must see it.
//
// A plugin that connects late is sent a snapshot (nriDomain.Snapshot) and hears events only
// once registered. Every change must reach it one way or the other: a change is stored
// before its event goes out (exits, removals), or the call holds s.nri.BlockSync() from the
// event until the change is stored (RunPodSandbox, CreateContainer, stopSandbox); pkg/nri
// holds plugin synchronization off meanwhile.

// nriNotifyTimeout bounds the notifications that run on a fresh context (exits, removals).
const nriNotifyTimeout = 10 * time.Second

// newNRI prepares NRI without accepting plugins yet: Recover starts it once the records are
// loaded and brought in line with the shims, so that a plugin's Synchronize (a plugin that was
// connected to the agent before it restarted reconnects, pre-installed ones are launched)
// reflects the node as it is now, containers that exited while the agent was down included,
// rather than an empty store.
func (s *Service) newNRI() error {
	c := s.cfg.NRI
	if !c.Enable {
		return nil
	}
	r, err := nri.New(nri.Options{
		Name: "berth", Version: Version,
		SocketPath: c.SocketPath, PluginPath: c.PluginPath, PluginConfigPath: c.PluginConfigPath,
		RegistrationTimeout: c.RegistrationTimeout.Duration, RequestTimeout: c.RequestTimeout.Duration,
		Domain: nriDomain{s}, Logger: s.log,
	})
	if err != nil {
		return err
	}
	s.nri = r
	return nil
}

// nriPod is a sandbox as NRI plugins see it.
func nriPod(md store.SandboxMetadata, st store.SandboxStatus) *api.PodSandbox {
	meta := md.Config.GetMetadata()
	p := &api.PodSandbox{
		Id: md.ID, Name: meta.GetName(), Uid: meta.GetUid(), Namespace: meta.GetNamespace(),
		Labels: md.Config.GetLabels(), Annotations: md.Config.GetAnnotations(),
		RuntimeHandler: md.RuntimeHandler, Pid: uint32(max(st.Pid, 0)),
		Linux: &api.LinuxPodSandbox{CgroupParent: md.Config.GetLinux().GetCgroupParent(), CgroupsPath: md.CgroupParent},
	}
	if st.PodIP != "" {
		p.Ips = []string{st.PodIP}
	}
	return p
}

func nriContainerState(st store.ContainerStatus) api.ContainerState {
	switch st.State {
	case store.ContainerCreated:
		return api.ContainerState_CONTAINER_CREATED
	case store.ContainerRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case store.ContainerExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// nriContainer is a container as NRI plugins see it; sp is its spec, nil to read the bundle's.
func nriContainer(md store.ContainerMetadata, st store.ContainerStatus, sp *specs.Spec) *api.Container {
	cfg := md.Config.ContainerConfig
	c := &api.Container{
		Id: md.ID, PodSandboxId: md.SandboxID, Name: cfg.GetMetadata().GetName(),
		State: nriContainerState(st), Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(),
		Pid: uint32(max(st.Pid, 0)), CreatedAt: md.CreatedAt.UnixNano(), ExitCode: st.ExitCode,
		StatusReason: st.Reason, StatusMessage: st.Message,
	}
	if !st.StartedAt.IsZero() {
		c.StartedAt = st.StartedAt.UnixNano()
	}
	if !st.FinishedAt.IsZero() {
		c.FinishedAt = st.FinishedAt.UnixNano()
	}
	if sp == nil {
		if b, err := os.ReadFile(filepath.Join(md.Bundle, "config.json")); err == nil {
			var loaded specs.Spec
			if json.Unmarshal(b, &loaded) == nil {
				sp = &loaded
			}
		}
	}
	nri.FillFromSpec(c, sp)
	return c
}

// nriPodOf finds a container's pod; a pod already gone yields a stub with its id.
func (s *Service) nriPodOf(sandboxID string) *api.PodSandbox {
	sb, err := s.store.Sandboxes.Get(sandboxID)
	if err != nil {
		return &api.PodSandbox{Id: sandboxID}
	}
	return nriPod(sb.Metadata(), sb.Status())
}

// nriRunPodSandbox runs the plugins' RunPodSandbox hook before the pod is visible; their
// error fails the pod. If a later step fails, plugins hear the pod stop and go.
func (s *Service) nriRunPodSandbox(ctx context.Context, md store.SandboxMetadata, st store.SandboxStatus, cl *cleanups) error {
	if s.nri == nil {
		return nil
	}
	pod := nriPod(md, st)
	if err := s.nri.RunPodSandbox(ctx, pod); err != nil {
		return err
	}
	cl.push("nri: undo run pod sandbox", func(ctx context.Context) error {
		if err := s.nri.StopPodSandbox(ctx, pod); err != nil {
			return err
		}
		return s.nri.RemovePodSandbox(ctx, pod)
	})
	return nil
}

func (s *Service) nriStopPodSandbox(ctx context.Context, sb *store.Sandbox) error {
	if s.nri == nil || sb.Status().State != store.SandboxReady {
		return nil // already stopped: plugins heard it then
	}
	return s.nri.StopPodSandbox(ctx, nriPod(sb.Metadata(), sb.Status()))
}

func (s *Service) nriRemovePodSandbox(md store.SandboxMetadata) {
	if s.nri == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), nriNotifyTimeout)
	defer cancel()
	if err := s.nri.RemovePodSandbox(ctx, nriPod(md, store.SandboxStatus{State: store.SandboxNotReady})); err != nil {
		s.log.Warn("nri: remove pod sandbox", "sandbox", md.ID, "err", err)
	}
}

// nriCreateContainer lets plugins adjust sp before it is written; their error fails the
// create. If a later step fails, plugins hear the container stop and go.
func (s *Service) nriCreateContainer(ctx context.Context, md store.ContainerMetadata, sbMD store.SandboxMetadata, sbSt store.SandboxStatus, sp *specs.Spec, cl *cleanups) error {
	if s.nri == nil {
		return nil
	}
	pod := nriPod(sbMD, sbSt)
	ctr := nriContainer(md, store.ContainerStatus{State: store.ContainerCreated}, sp)
	if err := s.nri.CreateContainer(ctx, pod, ctr, sp); err != nil {
		return err
	}
	cl.push("nri: undo create container", func(ctx context.Context) error {
		ctr.State = api.ContainerState_CONTAINER_STOPPED
		if err := s.nri.StopContainer(ctx, pod, ctr); err != nil {
			return err
		}
		return s.nri.RemoveContainer(ctx, pod, ctr)
	})
	return nil
}

// nriNotifyContainer sends a post-fact container event; failures are logged.
func (s *Service) nriNotifyContainer(ctx context.Context, c *store.Container, ev func(*nri.Runtime, context.Context, *api.PodSandbox, *api.Container) error) {
	if s.nri == nil {
		return
	}
	md := c.Metadata()
	if err := ev(s.nri, ctx, s.nriPodOf(md.SandboxID), nriContainer(md, c.Status(), nil)); err != nil {
		s.log.Warn("nri: container event", "container", md.ID, "err", err)
	}
}

func (s *Service) nriPostCreateContainer(ctx context.Context, id string) {
	if c, err := s.store.Containers.Get(id); err == nil {
		s.nriNotifyContainer(ctx, c, (*nri.Runtime).PostCreateContainer)
	}
}

// nriStartContainer runs the plugins' StartContainer hook; their error fails the start.
func (s *Service) nriStartContainer(ctx context.Context, c *store.Container) error {
	if s.nri == nil {
		return nil
	}
	md := c.Metadata()
	return s.nri.StartContainer(ctx, s.nriPodOf(md.SandboxID), nriContainer(md, c.Status(), nil))
}

func (s *Service) nriPostStartContainer(ctx context.Context, c *store.Container) {
	s.nriNotifyContainer(ctx, c, (*nri.Runtime).PostStartContainer)
}

// nriUpdateContainer lets plugins amend a resource update; it returns what to apply.
func (s *Service) nriUpdateContainer(ctx context.Context, c *store.Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	if s.nri == nil {
		return res, nil
	}
	md := c.Metadata()
	return s.nri.UpdateContainer(ctx, s.nriPodOf(md.SandboxID), nriContainer(md, c.Status(), nil), res)
}

// nriUpdatePodSandbox lets plugins see a pod resize before it is written; their error fails it.
func (s *Service) nriUpdatePodSandbox(ctx context.Context, sb *store.Sandbox, next *store.PodResources) error {
	if s.nri == nil {
		return nil
	}
	overhead, err := s.cgroups.ToResources(next.Overhead.LinuxContainerResources)
	if err != nil {
		return err
	}
	resources, err := s.cgroups.ToResources(next.Resources.LinuxContainerResources)
	if err != nil {
		return err
	}
	return s.nri.UpdatePodSandbox(ctx, nriPod(sb.Metadata(), sb.Status()), overhead, resources)
}

func (s *Service) nriPostUpdatePodSandbox(ctx context.Context, sb *store.Sandbox) {
	if s.nri == nil {
		return
	}
	if err := s.nri.PostUpdatePodSandbox(ctx, nriPod(sb.Metadata(), sb.Status())); err != nil {
		s.log.Warn("nri: post update pod sandbox", "sandbox", sb.ID(), "err", err)
	}
}

func (s *Service) nriPostUpdateContainer(ctx context.Context, c *store.Container) {
	s.nriNotifyContainer(ctx, c, (*nri.Runtime).PostUpdateContainer)
}

// nriStopContainer tells plugins a container exited, whether it was stopped or ended on its
// own. It runs on a fresh context: exits are recorded by background watchers too.
func (s *Service) nriStopContainer(c *store.Container) {
	ctx, cancel := context.WithTimeout(context.Background(), nriNotifyTimeout)
	defer cancel()
	s.nriNotifyContainer(ctx, c, (*nri.Runtime).StopContainer)
}

func (s *Service) nriRemoveContainer(c *store.Container) {
	ctx, cancel := context.WithTimeout(context.Background(), nriNotifyTimeout)
	defer cancel()
	s.nriNotifyContainer(ctx, c, (*nri.Runtime).RemoveContainer)
}

// nriDomain is what NRI plugins may see and change of this service.
type nriDomain struct{ s *Service }

func (d nriDomain) Snapshot(context.Context) ([]*api.PodSandbox, []*api.Container, error) {
	var pods []*api.PodSandbox
	for _, sb := range d.s.store.Sandboxes.List() {
		if sb.Status().Removing {
			continue
		}
		pods = append(pods, nriPod(sb.Metadata(), sb.Status()))
	}
	var ctrs []*api.Container
	for _, c := range d.s.store.Containers.List() {
		if c.Status().Removing {
			continue
		}
		ctrs = append(ctrs, nriContainer(c.Metadata(), c.Status(), nil))
	}
	return pods, ctrs, nil
}

func (d nriDomain) UpdateContainer(ctx context.Context, id string, res *specs.LinuxResources) error {
	c, err := d.s.store.Containers.Get(id)
	if err != nil {
		return err
	}
	switch st := c.Status(); st.State {
	case store.ContainerCreated, store.ContainerRunning:
	default:
		return fmt.Errorf("container %s is %s: %w", id, st.State, errdefs.ErrFailedPrecondition)
	}
	cl, err := d.s.client(c.Metadata().SandboxID)
	if err != nil {
		return err
	}
	return cl.Update(ctx, id, res)
}

func (d nriDomain) EvictContainer(ctx context.Context, id, reason string) error {
	c, err := d.s.store.Containers.Get(id)
	if errdefs.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	d.s.log.Info("nri: evicting container", "container", id, "reason", reason)
	return d.s.stopContainer(ctx, c, 0)
}
