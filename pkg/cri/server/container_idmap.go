package server

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// A container of a pod with a user namespace needs a rootfs its root owns: runc, already in the
// user namespace, creates mountpoints in it, and the image's root-owned files must look like
// the container's. Each lower snapshot directory is therefore cloned as an idmapped mount with
// the pod's pinned user namespace (read-only: the snapshots are shared with other containers,
// and a stray remove of the staging directory must not reach them), staged under
// <bundle>/idmap/<n>, and the overlay is built from the staged copies. The writable layer is
// not idmapped but owned by the pod's root on disk (host id of container id 0), as containerd
// does: what the container writes lands with the host ids of its user namespace (container
// root's files are host uid 100000, never host root), and the overlay root, taken from the
// upper directory, belongs to container root. Idmapping the overlay mount itself fails with
// EINVAL. Every staging mount is recorded in the ledger before it is made and released with
// the container, like the rootfs.

// idmapLowers stages an idmapped, read-only clone of each lower directory under dir and
// returns the staged paths in the same order.
func (s *Service) idmapLowers(md store.ContainerMetadata, userns string, lowers []string, dir string, cl *cleanups) ([]string, error) {
	staged := make([]string, len(lowers))
	for i, lower := range lowers {
		dst := filepath.Join(dir, strconv.Itoa(i))
		err := s.acquire(cl, store.Resource{Kind: store.KindMount, Path: dst, Owner: md.ID}, func() error {
			return stageIDMapped(lower, dst, userns)
		})
		if err != nil {
			return nil, fmt.Errorf("idmap layer %s: %w", lower, err)
		}
		staged[i] = dst
	}
	return staged, nil
}

// chownToPodRoot gives dirs to the host ids that container id 0 maps to.
func chownToPodRoot(m spec.IDMappings, dirs ...string) error {
	uid, gid := hostRoot(m.UIDs), hostRoot(m.GIDs)
	if uid < 0 || gid < 0 {
		return fmt.Errorf("container root is not mapped: %w", errdefs.ErrInvalidArgument)
	}
	for _, d := range dirs {
		if err := os.Lchown(d, uid, gid); err != nil {
			return fmt.Errorf("give %s to the pod's root: %w", d, err)
		}
	}
	return nil
}

func hostRoot(ms []specs.LinuxIDMapping) int {
	for _, m := range ms {
		if m.ContainerID == 0 && m.Size > 0 {
			return int(m.HostID)
		}
	}
	return -1
}

// stageIDMapped mounts an idmapped, read-only clone of src on dst (created as a directory).
func stageIDMapped(src, dst, userns string) error {
	tree, err := openIDMapped(src, userns, true)
	if err != nil {
		return err
	}
	defer unix.Close(tree)
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := unix.MoveMount(tree, "", unix.AT_FDCWD, dst, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return fmt.Errorf("move idmapped mount of %s to %s: %w", src, dst, err)
	}
	return nil
}

// openIDMapped returns a detached clone of the mount tree at dir, idmapped with the user
// namespace pinned at userns. Closing the descriptor of a tree never attached unmounts it.
func openIDMapped(dir, userns string, readonly bool) (int, error) {
	nsfd, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("open user namespace: %w", err)
	}
	defer unix.Close(nsfd)
	tree, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("clone mount of %s: %w", dir, err)
	}
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsfd)}
	if readonly {
		attr.Attr_set |= unix.MOUNT_ATTR_RDONLY
	}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, attr); err != nil {
		unix.Close(tree)
		return -1, fmt.Errorf("idmap mount of %s: %w", dir, err)
	}
	return tree, nil
}

// idmapRootfs prepares the layers of a container in a pod with a user namespace and returns
// the lower directories to mount.
func (s *Service) idmapRootfs(md store.ContainerMetadata, sbMD store.SandboxMetadata, lowers []string, upper, work string, cl *cleanups) ([]string, error) {
	userns := podUserNSPath(sbMD)
	if userns == "" {
		return lowers, nil
	}
	m, err := podUserNS(sbMD.Config.PodSandboxConfig)
	if err != nil {
		return nil, err
	}
	if err := chownToPodRoot(m, upper, work); err != nil {
		return nil, err
	}
	if err := searchableByOthers(s.cfg.State, md.Bundle); err != nil {
		return nil, err
	}
	return s.idmapLowers(md, userns, lowers, filepath.Join(md.Bundle, "idmap"), cl)
}

// searchableByOthers adds the search bit for others to root and each directory below it down
// to dir. runc sets up the rootfs as the container's root, which holds no capability over
// directories owned by the host's root (unmapped in its user namespace): it must be able to
// walk the path to the rootfs like any user. Only search is granted, not listing (0711, as
// containerd's state directories).
func searchableByOthers(root, dir string) error {
	rel, err := filepath.Rel(root, dir)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("%s is not below %s: %w", dir, root, errdefs.ErrInvalidArgument)
	}
	p := root
	for _, part := range append([]string{""}, strings.Split(rel, string(filepath.Separator))...) {
		p = filepath.Join(p, part)
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		if fi.Mode()&0o001 == 0 {
			keep := fi.Mode() & (os.ModePerm | os.ModeSetuid | os.ModeSetgid | os.ModeSticky)
			if err := os.Chmod(p, keep|0o001); err != nil {
				return fmt.Errorf("let the pod's root search %s: %w", p, err)
			}
		}
	}
	return nil
}
