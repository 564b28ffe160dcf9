package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/checkpoint"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// CheckpointPod writes one consistent checkpoint of a pod's running containers into the
// caller's empty directory: every selected container is frozen (cgroup freezer) before the
// first is dumped, stays frozen until the last archive is written, and is thawed before the
// call returns, whatever the outcome. The directory gets pod.json and one CRI-O-style
// archive per container (pkg/checkpoint); RestorePod reads it back.
func (s *Service) CheckpointPod(ctx context.Context, req *runtimeapi.CheckpointPodRequest) (*runtimeapi.CheckpointPodResponse, error) {
	if err := s.checkpointAllowed(ctx); err != nil {
		return nil, fmt.Errorf("checkpoint pod %q: %w", req.GetPodSandboxId(), err)
	}
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("checkpoint pod: %w", err)
	}
	// RemovePodSandbox waits for the checkpoint (and the checkpoint for a removal under way).
	defer s.sandboxLocks.rlock(sb.ID())()
	// Two checkpoints of one pod would thaw each other's containers mid-dump.
	defer s.podCheckpoints.lock(sb.ID())()
	ctrs, err := s.planPodCheckpoint(sb, req)
	if err != nil {
		return nil, fmt.Errorf("checkpoint pod %s: %w", sb.ID(), err)
	}
	if err := s.checkpointPod(ctx, sb, ctrs, req.GetOutputPath()); err != nil {
		return nil, fmt.Errorf("checkpoint pod %s: %w", sb.ID(), err)
	}
	return &runtimeapi.CheckpointPodResponse{}, nil
}

// planPodCheckpoint checks the request before anything is frozen or written and returns the
// containers in the request's order.
func (s *Service) planPodCheckpoint(sb *store.Sandbox, req *runtimeapi.CheckpointPodRequest) ([]*store.Container, error) {
	if st := sb.Status(); st.State != store.SandboxReady || st.Removing {
		return nil, fmt.Errorf("the pod is not ready: %w", errdefs.ErrFailedPrecondition)
	}
	if err := s.builtinHandler(sb.Metadata().RuntimeHandler); err != nil {
		return nil, err
	}
	if err := noOptions(req.GetOptions()); err != nil {
		return nil, err
	}
	if err := checkpoint.CheckPodDir(req.GetOutputPath()); err != nil {
		return nil, err
	}
	ctrs, err := s.selectedContainers(sb.ID(), req.GetContainerIds())
	if err != nil {
		return nil, err
	}
	for _, c := range ctrs {
		md := c.Metadata()
		if md.Config.GetTty() {
			return nil, fmt.Errorf("container %s (%q) has a tty, whose master the shim holds: berth does not checkpoint terminals: %w",
				md.ID, md.Config.GetMetadata().GetName(), errdefs.ErrFailedPrecondition)
		}
	}
	return ctrs, nil
}

// builtinHandler refuses a pod of an external OCI runtime: its containers are not
// libcontainer's, whose CRIU dump and restore berth drives.
func (s *Service) builtinHandler(name string) error {
	h, err := s.handlers.lookup(name)
	if err != nil {
		return err
	}
	if !h.cfg.IsBuiltin() {
		return fmt.Errorf("runtime handler %q runs %s: berth checkpoints and restores only its builtin runtime's containers: %w",
			name, h.cfg.Runtime, errdefs.ErrNotImplemented)
	}
	return nil
}

// noOptions refuses checkpoint and restore options: berth documents none, and the CRI asks
// runtimes to reject keys they do not support rather than ignore them.
func noOptions(opts map[string]string) error {
	if len(opts) == 0 {
		return nil
	}
	keys := make([]string, 0, len(opts))
	for k := range opts {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return fmt.Errorf("options %q: berth supports no checkpoint or restore options: %w", keys, errdefs.ErrInvalidArgument)
}

// selectedContainers resolves container_ids: non-empty, no duplicates, each a running
// container of the pod, and together every running container of the pod.
func (s *Service) selectedContainers(sandboxID string, ids []string) ([]*store.Container, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("no container_ids: %w", errdefs.ErrInvalidArgument)
	}
	var ctrs []*store.Container
	seen := map[string]bool{}
	for _, id := range ids {
		c, err := s.store.Containers.Resolve(id)
		if err != nil {
			return nil, fmt.Errorf("container_ids: %w", err)
		}
		md, st := c.Metadata(), c.Status()
		switch {
		case md.SandboxID != sandboxID:
			return nil, fmt.Errorf("container %s belongs to pod %s, not %s: %w", md.ID, md.SandboxID, sandboxID, errdefs.ErrInvalidArgument)
		case seen[md.ID]:
			return nil, fmt.Errorf("container %s is listed twice: %w", md.ID, errdefs.ErrInvalidArgument)
		case st.State != store.ContainerRunning || st.Removing:
			return nil, fmt.Errorf("container %s (%q) is %s, not running: %w", md.ID, md.Config.GetMetadata().GetName(), stateName(st), errdefs.ErrFailedPrecondition)
		}
		seen[md.ID] = true
		ctrs = append(ctrs, c)
	}
	for _, c := range s.store.ContainersOf(sandboxID) {
		if st := c.Status(); st.State == store.ContainerRunning && !st.Removing && !seen[c.ID()] {
			return nil, fmt.Errorf("running container %s (%q) is not in container_ids: a pod checkpoint takes all of them: %w",
				c.ID(), c.Metadata().Config.GetMetadata().GetName(), errdefs.ErrInvalidArgument)
		}
	}
	return ctrs, nil
}

// checkpointPod freezes the containers, dumps and archives each into out, writes the
// manifest and thaws them all. The thaw is deferred and needs no context: no return path
// leaves a container frozen. On error out is emptied again (the caller owns the directory
// itself). CRIU cannot be interrupted, so each dump runs to its end even when ctx ends
// (thawing under a running CRIU would have it freeze the cgroup again when it finishes);
// ctx is checked between the steps.
func (s *Service) checkpointPod(ctx context.Context, sb *store.Sandbox, ctrs []*store.Container, out string) (err error) {
	cl, err := s.client(sb.ID())
	if err != nil {
		return err
	}
	scratch, err := s.newCheckpointScratch(sb.ID())
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	defer func() {
		if err != nil {
			s.emptyDir(out)
		}
	}()
	if err := os.Mkdir(filepath.Join(out, checkpoint.PodContainersDir), 0o700); err != nil {
		return fmt.Errorf("checkpoint directory %q: %w", out, err)
	}
	if err := writeFrozenRecord(scratch, ctrs); err != nil {
		return err
	}
	thaw, err := s.freezeAll(ctrs)
	if err != nil {
		return err
	}
	defer func() {
		if terr := thaw(); terr != nil {
			err = errors.Join(err, terr)
		}
	}()
	m, err := s.podManifest(sb)
	if err != nil {
		return err
	}
	for _, c := range ctrs {
		if err := ctx.Err(); err != nil {
			return err
		}
		pc, err := s.capturePodContainer(ctx, cl, c, scratch, out)
		if err != nil {
			return err
		}
		m.Containers = append(m.Containers, pc)
	}
	return checkpoint.WritePodManifest(out, m)
}

func (s *Service) podManifest(sb *store.Sandbox) (checkpoint.PodManifest, error) {
	md := sb.Metadata()
	cfg, err := protojson.Marshal(md.Config.PodSandboxConfig)
	if err != nil {
		return checkpoint.PodManifest{}, fmt.Errorf("encode the pod config: %w", err)
	}
	return checkpoint.PodManifest{SandboxID: md.ID, RuntimeHandler: md.RuntimeHandler, PodConfig: cfg, CheckpointedAt: time.Now()}, nil
}

// freezeAll freezes every container's cgroup. The thaw it returns thaws each one it tried to
// freeze, all of them even when some fail; when a freeze fails, the ones before are thawed
// at once.
func (s *Service) freezeAll(ctrs []*store.Container) (thaw func() error, err error) {
	var tried []store.ContainerMetadata
	thaw = func() error {
		var errs []error
		for _, md := range tried {
			if err := s.cgroups.Freeze(md.Cgroup, false); err != nil {
				s.log.Error("resume container after a pod checkpoint", "container", md.ID, "err", err)
				errs = append(errs, fmt.Errorf("resume container %s: %w", md.ID, err))
			}
		}
		return errors.Join(errs...)
	}
	for _, c := range ctrs {
		md := c.Metadata()
		// Tried before it is frozen: a failed freeze may leave part of the cgroup frozen.
		tried = append(tried, md)
		if err := s.cgroups.Freeze(md.Cgroup, true); err != nil {
			return nil, errors.Join(fmt.Errorf("pause container %s: %w", md.ID, err), thaw())
		}
	}
	return thaw, nil
}

// frozenRecord lists, in a pod checkpoint's scratch directory, the cgroups it freezes; it is
// written before the first freeze, so that an agent that dies with the pod frozen thaws it
// at startup (thawInterrupted) before the scratch directory goes.
const frozenRecord = "frozen.json"

func writeFrozenRecord(scratch string, ctrs []*store.Container) error {
	paths := make([]string, 0, len(ctrs))
	for _, c := range ctrs {
		paths = append(paths, c.Metadata().Cgroup)
	}
	b, err := json.Marshal(paths)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(scratch, frozenRecord), b, 0o600); err != nil {
		return fmt.Errorf("record the cgroups to freeze: %w", err)
	}
	return nil
}

// thawInterrupted thaws the cgroups of pod checkpoints an agent exit cut short (recover.go).
func (s *Service) thawInterrupted() {
	records, _ := filepath.Glob(filepath.Join(s.checkpointScratch(), "*", frozenRecord))
	for _, r := range records {
		b, err := os.ReadFile(r)
		var paths []string
		if err == nil {
			err = json.Unmarshal(b, &paths)
		}
		if err != nil {
			s.log.Warn("recover: read an interrupted pod checkpoint", "file", r, "err", err)
			continue
		}
		for _, p := range paths {
			// A cgroup gone with its container has nothing left to thaw.
			if err := s.cgroups.Freeze(p, false); err != nil {
				s.log.Warn("recover: thaw a container frozen by an interrupted pod checkpoint", "cgroup", p, "err", err)
			}
		}
	}
}

// capturePodContainer dumps one frozen container and writes its archive into the pod
// checkpoint directory.
func (s *Service) capturePodContainer(ctx context.Context, cl ShimClient, c *store.Container, scratch, out string) (checkpoint.PodContainer, error) {
	md, st := c.Metadata(), c.Status()
	name := md.Config.GetMetadata().GetName()
	rel, err := checkpoint.ContainerArchive(name)
	if err != nil {
		return checkpoint.PodContainer{}, err
	}
	sp, err := readSpecFile(md.Bundle)
	if err != nil {
		return checkpoint.PodContainer{}, fmt.Errorf("container %s (%q): %w", md.ID, name, err)
	}
	err = s.dumpToArchive(context.WithoutCancel(ctx), ctx, cl, md, st, sp, filepath.Join(scratch, md.ID), filepath.Join(out, rel))
	if err != nil {
		return checkpoint.PodContainer{}, fmt.Errorf("container %s (%q): %w", md.ID, name, err)
	}
	return checkpoint.PodContainer{
		Name: name, ID: md.ID, Archive: rel, ImageName: md.ImageName, ImageRef: md.ImageID, Args: sp.Process.Args,
	}, nil
}

// emptyDir removes what a failed pod checkpoint wrote into the caller's directory.
func (s *Service) emptyDir(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		s.log.Warn("empty the checkpoint directory", "dir", dir, "err", err)
		return
	}
	for _, e := range ents {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			s.log.Warn("empty the checkpoint directory", "dir", dir, "err", err)
		}
	}
}
