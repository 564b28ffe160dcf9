package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/checkpoint"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// A CreateContainer whose image is the path of a checkpoint archive, or a checkpoint image in
// the image store (a manifest annotated with checkpoint.ImageAnnotation), as CRI-O accepts
// both, creates the container for a restore: the archive is extracted below the agent's root,
// the container's rootfs is its base image with the archive's rootfs diff on top, and the
// shim creates it without a process; StartContainer then restores the checkpointed
// processes with CRIU (memory, open files) in the target pod, whose network namespace is
// new. The extracted archive is a resource of the container, released with it.

// restoreSource is an extracted checkpoint archive (or checkpoint image) for one new container.
type restoreSource struct {
	archive  string // the archive's path or the checkpoint image's reference
	dir      string // <root>/checkpoints/<container id>
	contents checkpoint.Contents
}

func (r *restoreSource) imagesDir() string { return filepath.Join(r.dir, checkpoint.ImagesDir) }
func (r *restoreSource) workDir() string   { return filepath.Join(r.dir, "work") }

// isCheckpointImage reports whether a CreateContainer image names a checkpoint archive: an
// absolute path of a file on this node whose tar holds a checkpoint. Image references are
// never absolute paths, so nothing else is read from disk.
func isCheckpointImage(image string) (bool, error) {
	if !filepath.IsAbs(image) {
		return false, nil
	}
	ok, err := checkpoint.IsArchive(image)
	if errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("checkpoint archive %q: %w", image, errdefs.ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("read checkpoint archive %q: %w", image, err)
	}
	if !ok {
		return false, fmt.Errorf("%q is not a checkpoint archive (no %s, %s and %s/): %w",
			image, checkpoint.ConfigDumpFile, checkpoint.SpecDumpFile, checkpoint.ImagesDir, errdefs.ErrInvalidArgument)
	}
	return true, nil
}

// prepareRestore checks that the node and the request allow a restore, then extracts the
// archive as a resource of the container.
func (s *Service) prepareRestore(ctx context.Context, id string, cfg *runtimeapi.ContainerConfig, archive string, cl *cleanups) (*restoreSource, error) {
	return s.prepareRestoreFrom(ctx, id, cfg, archive, cl, func(dest string) (checkpoint.Contents, error) {
		return checkpoint.Extract(ctx, archive, dest)
	})
}

// isCheckpointImageInfo reports whether a resolved image is a checkpoint image (CRI-O's
// manifest annotation, checkpoint.ImageAnnotation).
func isCheckpointImageInfo(img ImageInfo) bool {
	_, ok := img.Annotations[checkpoint.ImageAnnotation]
	return ok
}

// prepareImageRestore is prepareRestore for a checkpoint image in the image store: its
// unpacked layer holds an archive's files, copied out as the container's resource (the
// image itself is not leased: nothing reads it after the create).
func (s *Service) prepareImageRestore(ctx context.Context, id string, cfg *runtimeapi.ContainerConfig, ref string, img ImageInfo, cl *cleanups) (*restoreSource, error) {
	return s.prepareRestoreFrom(ctx, id, cfg, ref, cl, func(dest string) (checkpoint.Contents, error) {
		layers, err := s.cimages.Lowers(ctx, img.ID)
		if err != nil {
			return checkpoint.Contents{}, fmt.Errorf("checkpoint image %q snapshots: %w", ref, err)
		}
		c, err := checkpoint.ExtractLayers(ctx, layers, dest)
		if err != nil {
			return c, fmt.Errorf("checkpoint image %q: %w", ref, err)
		}
		return c, nil
	})
}

// prepareRestoreFrom checks the node and the request, makes the container's restore
// directory (recorded before it is made) and has extract fill it.
func (s *Service) prepareRestoreFrom(ctx context.Context, id string, cfg *runtimeapi.ContainerConfig, source string, cl *cleanups, extract func(dest string) (checkpoint.Contents, error)) (*restoreSource, error) {
	if err := s.checkpointAllowed(ctx); err != nil {
		return nil, err
	}
	if cfg.GetTty() {
		return nil, fmt.Errorf("restore from %q: the container has a tty: berth does not restore terminals: %w", source, errdefs.ErrFailedPrecondition)
	}
	r := &restoreSource{archive: source, dir: filepath.Join(s.cfg.Root, "checkpoints", id)}
	err := s.acquire(cl, store.Resource{Kind: store.KindDir, Path: r.dir, Owner: id}, func() error {
		return os.MkdirAll(r.dir, 0o700)
	})
	if err != nil {
		return nil, err
	}
	if r.contents, err = extract(r.dir); err != nil {
		return nil, err
	}
	if err := os.Mkdir(r.workDir(), 0o700); err != nil {
		return nil, err
	}
	if r.contents.Config.RootfsImageName == "" && r.contents.Config.RootfsImageRef == "" {
		return nil, fmt.Errorf("checkpoint %q names no base image: %w", source, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// baseImage resolves the checkpoint's base image by name, else by id: the archive holds
// only the writable layer.
func (s *Service) baseImage(ctx context.Context, r *restoreSource) (ImageInfo, string, error) {
	cfg := r.contents.Config
	for _, ref := range []string{cfg.RootfsImageName, cfg.RootfsImageRef} {
		if ref == "" {
			continue
		}
		img, err := s.cimages.Resolve(ctx, ref)
		if err == nil {
			return img, ref, nil
		}
		if !errdefs.IsNotFound(err) {
			return ImageInfo{}, "", fmt.Errorf("resolve base image %q of checkpoint %q: %w", ref, r.archive, err)
		}
	}
	return ImageInfo{}, "", fmt.Errorf("base image %q of checkpoint %q is not on this node (pull it first): %w",
		cfg.RootfsImageName, r.archive, errdefs.ErrNotFound)
}

// applyRestoreRootfs writes the archive's rootfs diff through the container's mounted rootfs.
func (s *Service) applyRestoreRootfs(ctx context.Context, r *restoreSource, md store.ContainerMetadata) error {
	return checkpoint.ApplyRootfsDiff(ctx, r.dir, md.Rootfs)
}
