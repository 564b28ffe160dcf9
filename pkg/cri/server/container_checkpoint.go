package server

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/checkpoint"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// CheckpointContainer writes a checkpoint archive of a running container at the request's
// location (the kubelet's checkpoint API); the container keeps running. The archive has
// CRI-O's layout (pkg/checkpoint) and restores with a CreateContainer whose image is its path.
func (s *Service) CheckpointContainer(ctx context.Context, req *runtimeapi.CheckpointContainerRequest) (*runtimeapi.CheckpointContainerResponse, error) {
	if err := s.checkpointAllowed(ctx); err != nil {
		return nil, fmt.Errorf("checkpoint container %q: %w", req.GetContainerId(), err)
	}
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("checkpoint container: %w", err)
	}
	if req.GetTimeout() > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, time.Duration(req.GetTimeout())*time.Second)
		defer cancel()
	}
	if err := s.checkpointContainer(ctx, c, req.GetLocation()); err != nil {
		return nil, fmt.Errorf("checkpoint container %s: %w", c.ID(), err)
	}
	return &runtimeapi.CheckpointContainerResponse{}, nil
}

// checkpointContainer checks what it can before the dump (state, tty, location), has the
// shim dump the container into a scratch directory and writes the archive from it. The
// scratch directory goes in every case; Write leaves no partial archive.
func (s *Service) checkpointContainer(ctx context.Context, c *store.Container, location string) error {
	md, st := c.Metadata(), c.Status()
	if st.State != store.ContainerRunning || st.Removing {
		return fmt.Errorf("it is %s, not running: %w", stateName(st), errdefs.ErrFailedPrecondition)
	}
	if md.Config.GetTty() {
		return fmt.Errorf("it has a tty, whose master the shim holds: berth does not checkpoint terminals: %w", errdefs.ErrFailedPrecondition)
	}
	if location == "" {
		return fmt.Errorf("no location: %w", errdefs.ErrInvalidArgument)
	}
	if err := checkpoint.CheckLocation(location); err != nil {
		return err
	}
	sp, err := readSpecFile(md.Bundle)
	if err != nil {
		return err
	}
	cl, err := s.client(md.SandboxID)
	if err != nil {
		return err
	}
	scratch, err := s.newCheckpointScratch(md.ID)
	if err != nil {
		return err
	}
	defer os.RemoveAll(scratch)
	return s.dumpToArchive(ctx, ctx, cl, md, st, sp, scratch, location)
}

// newCheckpointScratch makes a directory for CRIU's images of one checkpoint; the caller
// removes it, and startup removes what a crash left.
func (s *Service) newCheckpointScratch(owner string) (string, error) {
	if err := os.MkdirAll(s.checkpointScratch(), 0o700); err != nil {
		return "", err
	}
	scratch, err := os.MkdirTemp(s.checkpointScratch(), owner+"-")
	if err != nil {
		return "", fmt.Errorf("checkpoint scratch: %w", err)
	}
	return scratch, nil
}

// dumpToArchive has the shim dump a container into dir (CRIU's images and work files) and
// writes the archive at location from them and the container's writable layer. dumpCtx
// bounds the dump, ctx the archive; Write leaves no partial archive.
func (s *Service) dumpToArchive(dumpCtx, ctx context.Context, cl ShimClient, md store.ContainerMetadata, st store.ContainerStatus, sp *specs.Spec, dir, location string) error {
	images, work := filepath.Join(dir, checkpoint.ImagesDir), filepath.Join(dir, "work")
	if err := os.MkdirAll(work, 0o700); err != nil {
		return err
	}
	if err := cl.Checkpoint(dumpCtx, ShimCheckpointRequest{ID: md.ID, ImagesDir: images, WorkDir: work}); err != nil {
		return fmt.Errorf("dump: %w", err)
	}
	contents := checkpointContents(md, st, sp)
	contents.ImagesDir, contents.UpperDir = images, filepath.Join(md.LayerDir, "upper")
	return checkpoint.Write(ctx, location, contents)
}

// checkpointContents is the archive's metadata: what a restore needs to rebuild the
// container in another pod, and what checkpointctl shows.
func checkpointContents(md store.ContainerMetadata, st store.ContainerStatus, sp *specs.Spec) checkpoint.Contents {
	cfg := md.Config.ContainerConfig
	return checkpoint.Contents{
		Config: checkpoint.Config{
			ID: md.ID, Name: cfg.GetMetadata().GetName(), Attempt: cfg.GetMetadata().GetAttempt(),
			RootfsImageName: md.ImageName, RootfsImageRef: md.ImageID, OCIRuntime: "berth",
			CreatedTime: md.CreatedAt, CheckpointedAt: time.Now(), SandboxID: md.SandboxID,
			Labels: cfg.GetLabels(), Annotations: cfg.GetAnnotations(), LogPath: cfg.GetLogPath(),
			Stdin: cfg.GetStdin(),
		},
		Spec:   sp,
		Status: checkpoint.Status{State: string(st.State), Pid: st.Pid, StartedAt: st.StartedAt},
	}
}

func stateName(st store.ContainerStatus) string {
	if st.Removing {
		return "being removed"
	}
	return string(st.State)
}

func readSpecFile(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, fmt.Errorf("read spec: %w", err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		return nil, fmt.Errorf("decode spec: %w", err)
	}
	return &sp, nil
}
