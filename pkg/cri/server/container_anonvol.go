package server

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// Anonymous volumes: each volume the image config declares (ImageConfig.Volumes, a Dockerfile
// VOLUME) that no CRI mount covers gets a directory of its own, <root>/containers/<id>/volumes/<n>,
// bound read-write at the declared path, as containerd does in its default image_volumes
// "copy" mode. The directory starts as a copy of what the image has at that path (read through
// the container's freshly mounted root, so in a pod with a user namespace the ids are those
// its idmapped layers show), so what the container writes there stays out of its writable
// layer. Each directory is in the ledger, owned by the container, and removed with it.

// anonymousVolumePaths are the cleaned container paths of the image's declared volumes that
// no CRI mount claims, sorted. The CRI mount wins: the kubelet put a real volume there.
func anonymousVolumePaths(cfg *runtimeapi.ContainerConfig, declared []string) []string {
	claimed := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		claimed[path.Clean(m.GetContainerPath())] = true
	}
	var out []string
	for _, v := range declared {
		// Docker accepts "data" for "/data".
		dst := path.Clean("/" + v)
		if dst == "/" || claimed[dst] || slices.Contains(out, dst) {
			continue
		}
		out = append(out, dst)
	}
	slices.Sort(out)
	return out
}

// createAnonymousVolumes makes and fills the container's anonymous volumes and returns their
// directories by container path. The container's root must be mounted.
func (s *Service) createAnonymousVolumes(md store.ContainerMetadata, declared []string, cl *cleanups) (map[string]string, error) {
	paths := anonymousVolumePaths(md.Config.ContainerConfig, declared)
	if len(paths) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(paths))
	for i, dst := range paths {
		dir := filepath.Join(md.LayerDir, "volumes", strconv.Itoa(i))
		err := s.acquire(cl, store.Resource{Kind: store.KindDir, Path: dir, Owner: md.ID}, func() error {
			return fillVolume(md.Rootfs, dst, dir)
		})
		if err != nil {
			return nil, fmt.Errorf("anonymous volume %s: %w", dst, err)
		}
		out[dst] = dir
	}
	return out, nil
}

// fillVolume creates dir as a copy of rootfs's dst. A path the image does not have gives an
// empty directory owned like the root; one that is not a directory is refused (a bind of a
// directory over a file cannot be made).
func fillVolume(rootfs, dst, dir string) error {
	src, err := securejoin.SecureJoin(rootfs, dst)
	if err != nil {
		return fmt.Errorf("resolve %s in the root: %w", dst, err)
	}
	fi, err := os.Lstat(src)
	if errors.Is(err, fs.ErrNotExist) {
		root, err := os.Lstat(rootfs)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
			return err
		}
		return copyEntry(rootfs, dir, root, nil)
	}
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		return fmt.Errorf("the image has a %s at %s, not a directory: %w", fi.Mode().Type(), dst, errdefs.ErrInvalidArgument)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o700); err != nil {
		return err
	}
	return copyTree(src, dir)
}

// copyTree copies the tree at src to dst (which must not exist): files, directories,
// symlinks, device nodes, fifos and hard links, with owners, modes and modification times.
// Extended attributes are not copied.
func copyTree(src, dst string) error {
	links := map[fileKey]string{}
	type dir struct {
		target string
		fi     fs.FileInfo
	}
	var dirs []dir
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.IsDir() {
			dirs = append(dirs, dir{target, fi})
		}
		return copyEntry(p, target, fi, links)
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", src, err)
	}
	// Directory times last, deepest first: creating their entries changed them.
	for i := len(dirs) - 1; i >= 0; i-- {
		setTimes(dirs[i].target, dirs[i].fi)
	}
	return nil
}

// fileKey identifies a file across the copy, to copy hard links as links.
type fileKey struct{ dev, ino uint64 }

// copyEntry makes one entry at target like fi (read at src): owner first, then mode (a
// chown clears the set-id bits). links dedups hard links; nil copies no links.
func copyEntry(src, target string, fi fs.FileInfo, links map[fileKey]string) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("no stat of %s", src)
	}
	if links != nil && !fi.IsDir() && st.Nlink > 1 {
		key := fileKey{uint64(st.Dev), st.Ino}
		if first, ok := links[key]; ok {
			return os.Link(first, target)
		}
		links[key] = target
	}
	mode := fi.Mode()
	switch {
	case mode.IsDir():
		if err := os.Mkdir(target, 0o700); err != nil {
			return err
		}
	case mode.IsRegular():
		if err := copyFile(src, target); err != nil {
			return err
		}
	case mode&fs.ModeSymlink != 0:
		dest, err := os.Readlink(src)
		if err != nil {
			return err
		}
		if err := os.Symlink(dest, target); err != nil {
			return err
		}
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		setTimes(target, fi)
		return nil
	default: // device nodes, fifos, sockets
		if err := unix.Mknod(target, st.Mode, int(st.Rdev)); err != nil {
			return err
		}
	}
	if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
		return err
	}
	if err := unix.Fchmodat(unix.AT_FDCWD, target, st.Mode&07777, 0); err != nil {
		return err
	}
	if !mode.IsDir() {
		setTimes(target, fi)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// setTimes gives target fi's access and modification times, best effort: a time is not
// worth failing a container for.
func setTimes(target string, fi fs.FileInfo) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return
	}
	ts := []unix.Timespec{unix.NsecToTimespec(st.Atim.Nano()), unix.NsecToTimespec(st.Mtim.Nano())}
	_ = unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW)
}
