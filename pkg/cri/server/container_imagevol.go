package server

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// Image volumes (CRI Mount.image, the kubelet's ImageVolume feature): an image's filesystem
// mounted read-only into a container. Each one is staged on the host under
// <bundle>/imagevol/<n> (a read-only overlay of the image's snapshots, or a read-only bind of
// its only snapshot: overlayfs wants two lower directories when it has no upper one) and the
// spec binds the staged directory, or its image_sub_path, into the container. The image is
// leased for as long as the container exists, so removing it cannot pull the snapshots from
// under the mount. Both the lease and the staging mount are in the ledger, released with the
// container like its rootfs. In a pod with a user namespace the overlay is built from
// idmapped clones of the snapshots, as the rootfs is (container_idmap.go), and the spec does
// not idmap the bind again.

// kindImageVolumeLease is an image lease held for one image volume of a container. The image
// store keeps one lease per owner name, and the container's own image already holds the
// container id, so Path is the lease's own owner name: "<container id>/imagevol/<n>".
const kindImageVolumeLease store.Kind = "imagevol-lease"

// validateImageMounts refuses image volumes the spec could not bind before anything is
// leased or mounted.
func validateImageMounts(cfg *runtimeapi.ContainerConfig) error {
	for _, m := range cfg.GetMounts() {
		if m.GetHostPath() != "" || m.GetImage().GetImage() == "" {
			continue
		}
		if err := spec.ValidateImageMount(m); err != nil {
			return err
		}
	}
	return nil
}

// mountImageVolumes stages every image volume of the container and returns the directories
// the spec binds, by cleaned container path. It records the resolved image id in the mount's
// ImageSpec.image_ref, which ContainerStatus reports back (KEP-5365).
func (s *Service) mountImageVolumes(ctx context.Context, md store.ContainerMetadata, sbMD store.SandboxMetadata, cl *cleanups) (map[string]string, error) {
	var out map[string]string
	for i, m := range md.Config.GetMounts() {
		ref := m.GetImage().GetImage()
		if m.GetHostPath() != "" || ref == "" {
			continue
		}
		img, err := s.cimages.Resolve(ctx, ref)
		if err != nil {
			if errdefs.IsNotFound(err) {
				return nil, fmt.Errorf("image volume %q: image not found: %w", ref, errdefs.ErrNotFound)
			}
			return nil, fmt.Errorf("image volume %q: %w", ref, err)
		}
		dir, err := s.stageImageVolume(ctx, md, podUserNSPath(sbMD), i, img.ID, cl)
		if err != nil {
			return nil, fmt.Errorf("image volume %q at %s: %w", ref, m.GetContainerPath(), err)
		}
		src, err := imageSubPath(dir, m.GetImageSubPath())
		if err != nil {
			return nil, fmt.Errorf("image volume %q at %s: %w", ref, m.GetContainerPath(), err)
		}
		m.Image.ImageRef = img.ID
		if out == nil {
			out = map[string]string{}
		}
		out[path.Clean(m.GetContainerPath())] = src
	}
	return out, nil
}

// stageImageVolume leases the image and mounts its filesystem read-only under the bundle;
// userns is the pod's pinned user namespace ("" for none).
func (s *Service) stageImageVolume(ctx context.Context, md store.ContainerMetadata, userns string, n int, imageID string, cl *cleanups) (string, error) {
	owner := md.ID + "/imagevol/" + strconv.Itoa(n)
	err := s.acquire(cl, store.Resource{Kind: kindImageVolumeLease, Path: owner, Owner: md.ID}, func() error {
		return s.cimages.Lease(ctx, owner, imageID)
	})
	if err != nil {
		return "", fmt.Errorf("lease image %s: %w", imageID, err)
	}
	lowers, err := s.cimages.Lowers(ctx, imageID)
	if err != nil {
		return "", fmt.Errorf("image %s snapshots: %w", imageID, err)
	}
	if userns != "" && len(lowers) > 0 {
		idmapDir := filepath.Join(md.Bundle, "imagevol-idmap", strconv.Itoa(n))
		if lowers, err = s.idmapLowers(md, userns, lowers, idmapDir, cl); err != nil {
			return "", err
		}
	}
	dir := filepath.Join(md.Bundle, "imagevol", strconv.Itoa(n))
	err = s.acquire(cl, store.Resource{Kind: store.KindMount, Path: dir, Owner: md.ID}, func() error {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		switch len(lowers) {
		case 0:
			return nil // an image without layers is an empty directory
		case 1:
			if err := s.mounter.Mount(lowers[0], dir, "", unix.MS_BIND, ""); err != nil {
				return err
			}
			return s.mounter.Mount("", dir, "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY, "")
		default:
			return s.mounter.Mount("overlay", dir, "overlay", unix.MS_RDONLY, "lowerdir="+strings.Join(lowers, ":"))
		}
	})
	if err != nil {
		return "", fmt.Errorf("mount image %s: %w", imageID, err)
	}
	return dir, nil
}

// imageSubPath resolves sub inside the staged image, symlinks included, without leaving it.
// A path the image does not have is refused, as the kubelet expects of the runtime.
func imageSubPath(dir, sub string) (string, error) {
	if sub == "" {
		return dir, nil
	}
	p, err := securejoin.SecureJoin(dir, sub)
	if err != nil {
		return "", fmt.Errorf("image sub path %q: %w", sub, err)
	}
	if _, err := os.Stat(p); err != nil {
		if os.IsNotExist(err) {
			return "", fmt.Errorf("image sub path %q does not exist in the image: %w", sub, errdefs.ErrNotFound)
		}
		return "", fmt.Errorf("image sub path %q: %w", sub, err)
	}
	return p, nil
}
