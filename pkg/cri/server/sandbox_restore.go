package server

import (
	"context"
	"fmt"
	"slices"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/checkpoint"
)

// RestorePod creates a pod from a CheckpointPod directory: the sandbox by RunPodSandbox's
// path (a new network namespace), then one container per config by CreateContainer's
// restore path, each created without a process; StartContainer restores its processes with
// CRIU. On any error every sandbox and container the call created is removed.
func (s *Service) RestorePod(ctx context.Context, req *runtimeapi.RestorePodRequest) (*runtimeapi.RestorePodResponse, error) {
	dir := req.GetCheckpointPath()
	if err := s.checkpointAllowed(ctx); err != nil {
		return nil, fmt.Errorf("restore pod from %q: %w", dir, err)
	}
	byName, err := s.planPodRestore(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("restore pod from %q: %w", dir, err)
	}
	resp, err := s.restorePod(ctx, req, byName)
	if err != nil {
		return nil, fmt.Errorf("restore pod from %q: %w", dir, err)
	}
	return resp, nil
}

// planPodRestore checks the request against the checkpoint before anything is created and
// returns the checkpoint's containers by name.
func (s *Service) planPodRestore(ctx context.Context, req *runtimeapi.RestorePodRequest) (map[string]checkpoint.PodContainer, error) {
	if req.GetConfig() == nil {
		return nil, fmt.Errorf("no pod config: %w", errdefs.ErrInvalidArgument)
	}
	if err := s.builtinHandler(req.GetRuntimeHandler()); err != nil {
		return nil, err
	}
	if err := noOptions(req.GetOptions()); err != nil {
		return nil, err
	}
	m, err := checkpoint.LoadPod(req.GetCheckpointPath())
	if err != nil {
		return nil, err
	}
	byName := map[string]checkpoint.PodContainer{}
	for _, c := range m.Containers {
		byName[c.Name] = c
	}
	if err := matchNames(req.GetContainerConfigs(), byName); err != nil {
		return nil, err
	}
	for _, cfg := range req.GetContainerConfigs() {
		if err := s.matchContainer(ctx, cfg, byName[cfg.GetMetadata().GetName()]); err != nil {
			return nil, fmt.Errorf("container %q: %w", cfg.GetMetadata().GetName(), err)
		}
	}
	return byName, nil
}

// matchNames checks that the configs' names are unique and exactly the checkpoint's.
func matchNames(cfgs []*runtimeapi.ContainerConfig, byName map[string]checkpoint.PodContainer) error {
	if len(cfgs) == 0 {
		return fmt.Errorf("no container_configs: %w", errdefs.ErrInvalidArgument)
	}
	seen := map[string]bool{}
	for _, cfg := range cfgs {
		name := cfg.GetMetadata().GetName()
		switch {
		case name == "":
			return fmt.Errorf("a container config has no metadata.name: %w", errdefs.ErrInvalidArgument)
		case seen[name]:
			return fmt.Errorf("container %q is configured twice: %w", name, errdefs.ErrInvalidArgument)
		}
		if _, ok := byName[name]; !ok {
			return fmt.Errorf("container %q is not in the checkpoint (it has %q): %w", name, sortedNames(byName), errdefs.ErrInvalidArgument)
		}
		seen[name] = true
	}
	for name := range byName {
		if !seen[name] {
			return fmt.Errorf("checkpointed container %q has no config: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func sortedNames(byName map[string]checkpoint.PodContainer) []string {
	names := make([]string, 0, len(byName))
	for n := range byName {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// matchContainer checks what a config says of the checkpointed process that berth can
// compare: the image (the checkpoint's base image, by name or id) and the command line. A
// terminal cannot be restored.
func (s *Service) matchContainer(ctx context.Context, cfg *runtimeapi.ContainerConfig, pc checkpoint.PodContainer) error {
	if cfg.GetTty() {
		return fmt.Errorf("it has a tty: berth does not restore terminals: %w", errdefs.ErrFailedPrecondition)
	}
	if image := cfg.GetImage().GetImage(); image != "" && image != pc.ImageName && image != pc.ImageRef {
		img, err := s.cimages.Resolve(ctx, image)
		if err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("resolve image %q: %w", image, err)
		}
		if err != nil || img.ID != pc.ImageRef {
			return fmt.Errorf("image %q is not the checkpoint's %q (%s): %w", image, pc.ImageName, pc.ImageRef, errdefs.ErrInvalidArgument)
		}
	}
	if !argsMatch(cfg, pc.Args) {
		return fmt.Errorf("command %q, args %q do not match the checkpointed process %q: %w",
			cfg.GetCommand(), cfg.GetArgs(), pc.Args, errdefs.ErrInvalidArgument)
	}
	return nil
}

// argsMatch compares a config's command line with the checkpointed process's: a command
// replaces the image's entrypoint, so command+args must be it; args alone follow the
// entrypoint, so they must end it. Neither leaves nothing to compare.
func argsMatch(cfg *runtimeapi.ContainerConfig, args []string) bool {
	cmd, cargs := cfg.GetCommand(), cfg.GetArgs()
	switch {
	case len(cmd) > 0:
		return slices.Equal(append(slices.Clone(cmd), cargs...), args)
	case len(cargs) > 0:
		return len(args) >= len(cargs) && slices.Equal(args[len(args)-len(cargs):], cargs)
	}
	return true
}

// restorePod runs the sandbox and creates the containers. The steps run on a context the
// caller cannot cancel (so that none is parked half done for a retry, keep.go); a caller
// gone by the end gets everything removed and its deadline error.
func (s *Service) restorePod(ctx context.Context, req *runtimeapi.RestorePodRequest, byName map[string]checkpoint.PodContainer) (_ *runtimeapi.RestorePodResponse, err error) {
	wctx, cancel := detach(ctx)
	defer cancel()
	cl := &cleanups{log: s.log.With("checkpoint", req.GetCheckpointPath())}
	defer func() {
		if err != nil {
			cl.run(ctx)
		}
	}()
	run, err := s.RunPodSandbox(wctx, &runtimeapi.RunPodSandboxRequest{Config: req.GetConfig(), RuntimeHandler: req.GetRuntimeHandler()})
	if err != nil {
		return nil, err
	}
	podID := run.GetPodSandboxId()
	cl.push("remove the restored pod", func(ctx context.Context) error {
		_, err := s.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		return err
	})
	resp := &runtimeapi.RestorePodResponse{PodSandboxId: podID}
	for _, cfg := range req.GetContainerConfigs() {
		name := cfg.GetMetadata().GetName()
		// The container's image is its archive: CreateContainer's restore path
		// (container_restore.go) takes the base image and the process from it.
		c := proto.Clone(cfg).(*runtimeapi.ContainerConfig)
		c.Image = &runtimeapi.ImageSpec{Image: byName[name].ArchivePath(req.GetCheckpointPath())}
		cr, err := s.CreateContainer(wctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: c, SandboxConfig: req.GetConfig()})
		if err != nil {
			return nil, fmt.Errorf("container %q: %w", name, err)
		}
		resp.RestoredContainers = append(resp.RestoredContainers, &runtimeapi.RestoredContainer{Name: name, ContainerId: cr.GetContainerId()})
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("restored as pod %s after the caller left, removed again: %w", podID, err)
	}
	return resp, nil
}
