package checkpoint

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// opaqueXattr marks an overlay upper directory that hides the lower layers' entries.
const opaqueXattr = "trusted.overlay.opaque"

// paxOpaque carries opaqueXattr on a directory entry of rootfs-diff.tar.
const paxOpaque = "SCHILY.xattr." + opaqueXattr

// addRootfsDiff stages rootfs-diff.tar in scratch (tar needs each entry's size first),
// then adds it and deleted.files to the archive.
func addRootfsDiff(ctx context.Context, tw *tar.Writer, scratch, upper string) error {
	f, err := os.CreateTemp(scratch, ".rootfs-diff-*")
	if err != nil {
		return fmt.Errorf("stage rootfs diff: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	deleted, err := diffUpper(ctx, f, upper)
	if err != nil {
		return fmt.Errorf("rootfs diff of %s: %w", upper, err)
	}
	info, err := f.Stat()
	if err != nil {
		return err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: RootfsDiffFile, Mode: 0o600, Size: info.Size(), Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	if _, err := io.Copy(tw, f); err != nil {
		return fmt.Errorf("add %s: %w", RootfsDiffFile, err)
	}
	if deleted == nil {
		deleted = []string{}
	}
	return addJSON(tw, DeletedFilesFile, deleted)
}

// diffUpper writes the upper layer's files, directories and symlinks to w and returns the
// paths its whiteouts delete. Sockets, fifos and device nodes other than whiteouts are
// left out: a container's writable layer has no use for them after a restore.
func diffUpper(ctx context.Context, w io.Writer, upper string) ([]string, error) {
	tw := tar.NewWriter(w)
	var deleted []string
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil || rel == "." {
			return err
		}
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		if isWhiteout(info) {
			deleted = append(deleted, rel)
			return nil
		}
		return addUpperEntry(tw, p, rel, info)
	})
	if err != nil {
		return nil, err
	}
	return deleted, tw.Close()
}

func isWhiteout(info fs.FileInfo) bool {
	st, ok := info.Sys().(*syscall.Stat_t)
	return ok && info.Mode()&fs.ModeCharDevice != 0 && st.Rdev == 0
}

func addUpperEntry(tw *tar.Writer, p, rel string, info fs.FileInfo) error {
	link := ""
	switch {
	case info.Mode()&fs.ModeSymlink != 0:
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		link = target
	case info.IsDir(), info.Mode().IsRegular():
	default:
		return nil
	}
	hdr, err := tar.FileInfoHeader(info, link)
	if err != nil {
		return err
	}
	hdr.Name = rel
	if info.IsDir() {
		hdr.Name += "/"
		if v, err := getxattr(p, opaqueXattr); err == nil && v == "y" {
			hdr.PAXRecords = map[string]string{paxOpaque: "y"}
		}
	}
	if !info.Mode().IsRegular() {
		return tw.WriteHeader(hdr)
	}
	return addFile(tw, p, rel, info)
}

func getxattr(p, name string) (string, error) {
	buf := make([]byte, 16)
	n, err := unix.Lgetxattr(p, name, buf)
	if err != nil {
		return "", err
	}
	return string(buf[:n]), nil
}

// ApplyRootfsDiff replays an extracted archive's rootfs-diff.tar and deleted.files onto
// rootfs, a new container's mounted overlay (image layers below a fresh writable layer):
// files are written and deletions removed through the mount, so overlayfs itself makes the
// whiteouts and opaque directories. Every path is resolved inside rootfs (os.Root), so an
// archive cannot write outside it.
func ApplyRootfsDiff(ctx context.Context, dir, rootfs string) error {
	root, err := os.OpenRoot(rootfs)
	if err != nil {
		return fmt.Errorf("open rootfs %s: %w", rootfs, err)
	}
	defer root.Close()
	f, err := os.Open(filepath.Join(dir, RootfsDiffFile))
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("open %s: %w", RootfsDiffFile, err)
	default:
		defer f.Close()
		if err := applyDiffTar(ctx, root, f); err != nil {
			return fmt.Errorf("apply %s: %w", RootfsDiffFile, err)
		}
	}
	return applyDeleted(root, filepath.Join(dir, DeletedFilesFile))
}

func applyDiffTar(ctx context.Context, root *os.Root, r io.Reader) error {
	return eachEntry(ctx, r, func(hdr *tar.Header, r io.Reader) error { return applyEntry(root, hdr, r) })
}

func applyEntry(root *os.Root, hdr *tar.Header, r io.Reader) error {
	name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
	if name == "." {
		return nil
	}
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o755); err != nil {
			return err
		}
	}
	mode := fs.FileMode(hdr.Mode).Perm() | fs.FileMode(hdr.Mode)&(fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)
	switch hdr.Typeflag {
	case tar.TypeDir:
		// An opaque directory hid the image's entries: removing the image's directory and
		// making it again has overlayfs hide them the same way.
		if hdr.PAXRecords[paxOpaque] == "y" {
			if err := root.RemoveAll(name); err != nil {
				return err
			}
		}
		if err := root.Mkdir(name, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
	case tar.TypeReg:
		if err := writeEntry(root, name, mode, r); err != nil {
			return err
		}
	case tar.TypeSymlink:
		if err := root.Symlink(hdr.Linkname, name); err != nil {
			return err
		}
		return root.Lchown(name, hdr.Uid, hdr.Gid)
	default:
		return fmt.Errorf("entry type %q: %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
	}
	if err := root.Lchown(name, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	// Chown clears set-id bits; set the mode last.
	if err := root.Chmod(name, mode); err != nil {
		return err
	}
	return root.Chtimes(name, hdr.ModTime, hdr.ModTime)
}

func writeEntry(root *os.Root, name string, mode fs.FileMode, r io.Reader) error {
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, r); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// applyDeleted removes each path of deleted.files, which overlayfs records as a whiteout
// hiding the image's file.
func applyDeleted(root *os.Root, file string) error {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", DeletedFilesFile, err)
	}
	var deleted []string
	if err := json.Unmarshal(data, &deleted); err != nil {
		return fmt.Errorf("decode %s: %w: %w", DeletedFilesFile, err, errdefs.ErrInvalidArgument)
	}
	for _, p := range deleted {
		if err := whiteout(root, p); err != nil {
			return fmt.Errorf("whiteout %q: %w", p, err)
		}
	}
	return nil
}

func whiteout(root *os.Root, p string) error {
	name := path.Clean(strings.TrimPrefix(p, "/"))
	if name == "." {
		return fmt.Errorf("empty path: %w", errdefs.ErrInvalidArgument)
	}
	return root.RemoveAll(name)
}
