package nri

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Domain is what plugins may see and change of the runtime; pkg/cri implements it.
type Domain interface {
	// Snapshot lists every pod and container, for a newly connected plugin.
	Snapshot(ctx context.Context) ([]*api.PodSandbox, []*api.Container, error)
	// UpdateContainer applies new cgroup limits to a created or running container.
	UpdateContainer(ctx context.Context, id string, res *specs.LinuxResources) error
	// EvictContainer stops a container a plugin asked to evict.
	EvictContainer(ctx context.Context, id, reason string) error
}

// Options configure a Runtime.
type Options struct {
	// Name and Version identify the runtime to plugins.
	Name, Version string
	// SocketPath is where external plugins connect; PluginPath holds plugins the runtime
	// launches itself and PluginConfigPath their configs.
	SocketPath, PluginPath, PluginConfigPath string
	// RegistrationTimeout and RequestTimeout bound plugin registration and each plugin call
	// (zero: NRI's defaults). A plugin's initial Synchronize gets the longer of the two.
	// NRI keeps them process-wide: the last Runtime created sets them.
	RegistrationTimeout, RequestTimeout time.Duration
	Domain                              Domain
	Logger                              *slog.Logger
}

// Runtime relays events to NRI plugins. A nil *Runtime is NRI turned off: every method is
// then a no-op, so callers need no checks.
type Runtime struct {
	a    *adaptation.Adaptation
	dom  Domain
	log  *slog.Logger
	gate *gate
	// requestTimeout is NRI's per-call timeout; syncTimeout bounds a plugin's Synchronize.
	requestTimeout, syncTimeout time.Duration
}

// New prepares NRI; Start begins accepting plugins.
func New(opts Options) (*Runtime, error) {
	if opts.Domain == nil {
		return nil, errors.New("nri: no domain")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	setLogger(log)
	regTimeout := cmp.Or(opts.RegistrationTimeout, adaptation.DefaultPluginRegistrationTimeout)
	reqTimeout := cmp.Or(opts.RequestTimeout, adaptation.DefaultPluginRequestTimeout)
	adaptation.SetPluginRegistrationTimeout(regTimeout)
	adaptation.SetPluginRequestTimeout(reqTimeout)
	r := &Runtime{dom: opts.Domain, log: log, requestTimeout: reqTimeout, syncTimeout: max(regTimeout, reqTimeout)}
	r.gate = newGate(func() func() { return r.a.BlockPluginSync().Unblock })
	aopts := []adaptation.Option{adaptation.WithSocketPath(opts.SocketPath)}
	if socketLive(opts.SocketPath) {
		// NRI would unlink and take over the socket, cutting the other runtime's plugins
		// off, and remove it again when we stop. Leave it to its owner.
		log.Warn("nri: socket is served by another process; external plugins disabled", "socket", opts.SocketPath)
		aopts = append(aopts, adaptation.WithDisabledExternalConnections())
	}
	if opts.PluginPath != "" {
		aopts = append(aopts, adaptation.WithPluginPath(opts.PluginPath))
	}
	if opts.PluginConfigPath != "" {
		aopts = append(aopts, adaptation.WithPluginConfigPath(opts.PluginConfigPath))
	}
	a, err := adaptation.New(opts.Name, opts.Version, r.sync, r.update, aopts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	r.a = a
	return r, nil
}

// Start launches pre-installed plugins and listens for external ones.
func (r *Runtime) Start() error {
	if r == nil {
		return nil
	}
	if err := r.a.Start(); err != nil {
		return fmt.Errorf("start nri: %w", err)
	}
	return nil
}

// Stop disconnects every plugin and stops listening.
func (r *Runtime) Stop() {
	if r == nil {
		return
	}
	r.gate.stop()
	r.a.Stop()
}

// BlockSync holds off plugin synchronization until the returned func is called. A CRI call
// that tells plugins about a pod or container before it stores it (RunPodSandbox,
// CreateContainer) holds it from before the event until the object is stored, so that a
// plugin connecting meanwhile either finds the object in its snapshot or gets the event.
// Holds nest and may be taken by any goroutine, holding or not.
func (r *Runtime) BlockSync() func() {
	if r == nil {
		return func() {}
	}
	return r.gate.enter()
}

// sync hands a connecting plugin the current pods and containers and applies the updates it
// asks for. No state change is under way meanwhile (see gate), so nothing happens between
// the snapshot and the plugin's registration that the plugin would not hear about.
func (r *Runtime) sync(ctx context.Context, cb adaptation.SyncCB) error {
	if err := r.gate.closeForSync(); err != nil {
		return fmt.Errorf("nri sync: %w", err)
	}
	pods, ctrs, err := r.dom.Snapshot(ctx)
	if err != nil {
		return fmt.Errorf("nri sync: %w", err)
	}
	updates, err := r.synchronize(ctx, cb, pods, ctrs)
	if err != nil {
		return fmt.Errorf("nri sync: %w", err)
	}
	_, err = r.applyUpdates(ctx, updates)
	return err
}

// synchronize sends the snapshot under syncTimeout rather than the per-call request
// timeout. The adaptation bounds Synchronize with the request timeout and drops a plugin
// that overruns it, although a plugin's first sync scales with the node's pods and
// containers, is off every pod's critical path, and (see gate) holds creations back anyway:
// a plugin dropped there would silently miss everything created meanwhile. The timeout is
// process-wide, but the gate is closed, so no other plugin call is in flight to see it.
func (r *Runtime) synchronize(ctx context.Context, cb adaptation.SyncCB, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	adaptation.SetPluginRequestTimeout(r.syncTimeout)
	defer adaptation.SetPluginRequestTimeout(r.requestTimeout)
	return cb(ctx, pods, ctrs)
}

// update serves a plugin's unsolicited updates; it returns those that failed.
func (r *Runtime) update(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return r.applyUpdates(ctx, updates)
}

func (r *Runtime) applyUpdates(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	var failed []*api.ContainerUpdate
	for _, u := range updates {
		res := u.GetLinux().GetResources().ToOCI()
		if res == nil {
			continue
		}
		if err := r.dom.UpdateContainer(ctx, u.GetContainerId(), res); err != nil {
			if u.GetIgnoreFailure() {
				r.log.Debug("nri: ignored failed container update", "container", u.GetContainerId(), "err", err)
				continue
			}
			failed = append(failed, u)
			r.log.Warn("nri: container update failed", "container", u.GetContainerId(), "err", err)
		}
	}
	if len(failed) > 0 {
		return failed, fmt.Errorf("nri: %d container updates failed", len(failed))
	}
	return nil, nil
}

func (r *Runtime) evict(ctx context.Context, evictions []*api.ContainerEviction) error {
	var errs []error
	for _, e := range evictions {
		if err := r.dom.EvictContainer(ctx, e.GetContainerId(), e.GetReason()); err != nil {
			errs = append(errs, fmt.Errorf("evict container %s: %w", e.GetContainerId(), err))
		}
	}
	return errors.Join(errs...)
}

// Each event below holds the gate while plugins hear it: a plugin synchronizing meanwhile
// would otherwise be registered just after the event went out, its snapshot taken before
// the change, and never learn of it.

// RunPodSandbox tells plugins a pod is starting; an error fails the pod.
func (r *Runtime) RunPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("run pod sandbox", r.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}))
}

// StopPodSandbox tells plugins a pod stopped (its containers have exited).
func (r *Runtime) StopPodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("stop pod sandbox", r.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: pod}))
}

// UpdatePodSandbox tells plugins a pod's resources are about to change (the containers'
// sum and the overhead); their error fails the update.
func (r *Runtime) UpdatePodSandbox(ctx context.Context, pod *api.PodSandbox, overhead, resources *specs.LinuxResources) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	_, err := r.a.UpdatePodSandbox(ctx, &api.UpdatePodSandboxRequest{
		Pod:                    pod,
		OverheadLinuxResources: api.FromOCILinuxResources(overhead, nil),
		LinuxResources:         api.FromOCILinuxResources(resources, nil),
	})
	return wrap("update pod sandbox", err)
}

// PostUpdatePodSandbox tells plugins a pod's resources changed.
func (r *Runtime) PostUpdatePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("post update pod sandbox", r.a.PostUpdatePodSandbox(ctx, &api.PostUpdatePodSandboxRequest{Pod: pod}))
}

// RemovePodSandbox tells plugins a pod is gone.
func (r *Runtime) RemovePodSandbox(ctx context.Context, pod *api.PodSandbox) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("remove pod sandbox", r.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: pod}))
}

// CreateContainer asks plugins to adjust a container about to be created and applies the
// adjustment to sp. It also applies updates to other containers and evictions they ask for.
func (r *Runtime) CreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, sp *specs.Spec) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	rpl, err := r.a.CreateContainer(ctx, &api.CreateContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return wrap("create container", err)
	}
	if err := Adjust(sp, rpl.GetAdjust()); err != nil {
		return fmt.Errorf("nri: adjust container %s: %w", ctr.GetId(), err)
	}
	if _, err := r.applyUpdates(ctx, rpl.GetUpdate()); err != nil {
		return err
	}
	return r.evict(ctx, rpl.GetEvict())
}

// PostCreateContainer tells plugins a container was created.
func (r *Runtime) PostCreateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("post-create container", r.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: pod, Container: ctr}))
}

// StartContainer tells plugins a container is about to start; an error fails the start.
func (r *Runtime) StartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("start container", r.a.StartContainer(ctx, &api.StartContainerRequest{Pod: pod, Container: ctr}))
}

// PostStartContainer tells plugins a container started.
func (r *Runtime) PostStartContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("post-start container", r.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: pod, Container: ctr}))
}

// UpdateContainer lets plugins amend a CRI resource update; it returns the resources to apply
// to ctr (res itself when no plugin touched them) and applies updates to other containers.
func (r *Runtime) UpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container, res *specs.LinuxResources) (*specs.LinuxResources, error) {
	if r == nil {
		return res, nil
	}
	defer r.gate.enter()()
	rpl, err := r.a.UpdateContainer(ctx, &api.UpdateContainerRequest{
		Pod: pod, Container: ctr, LinuxResources: api.FromOCILinuxResources(res, nil),
	})
	if err != nil {
		return nil, wrap("update container", err)
	}
	var others []*api.ContainerUpdate
	for _, u := range rpl.GetUpdate() {
		if u.GetContainerId() == ctr.GetId() {
			if oci := u.GetLinux().GetResources().ToOCI(); oci != nil {
				res = oci
			}
			continue
		}
		others = append(others, u)
	}
	if _, err := r.applyUpdates(ctx, others); err != nil {
		return nil, err
	}
	return res, r.evict(ctx, rpl.GetEvict())
}

// PostUpdateContainer tells plugins a container's resources changed.
func (r *Runtime) PostUpdateContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("post-update container", r.a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: pod, Container: ctr}))
}

// StopContainer tells plugins a container exited and applies the updates they answer with
// (typically resources freed for the pod's other containers).
func (r *Runtime) StopContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	rpl, err := r.a.StopContainer(ctx, &api.StopContainerRequest{Pod: pod, Container: ctr})
	if err != nil {
		return wrap("stop container", err)
	}
	_, err = r.applyUpdates(ctx, rpl.GetUpdate())
	return err
}

// RemoveContainer tells plugins a container is gone.
func (r *Runtime) RemoveContainer(ctx context.Context, pod *api.PodSandbox, ctr *api.Container) error {
	if r == nil {
		return nil
	}
	defer r.gate.enter()()
	return wrap("remove container", r.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: pod, Container: ctr}))
}

func socketLive(path string) bool {
	c, err := net.DialTimeout("unix", path, time.Second)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

func wrap(op string, err error) error {
	if err == nil {
		return nil
	}
	return fmt.Errorf("nri %s: %w", op, err)
}
