// Package unpack applies an uncompressed layer tar to an empty directory in overlayfs form
// (whiteouts as 0/0 char devices, opaque dirs as xattrs) and never writes outside that directory.
package unpack

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

// ErrBreakout marks a tar entry that would land outside the snapshot directory.
var ErrBreakout = errors.New("tar entry escapes the snapshot")

const (
	whiteoutPrefix = ".wh."
	opaqueMarker   = ".wh..wh..opq"
	// overlayfs reads these from lower layers; a layer must not be able to plant them.
	overlayXattrPrefix = "trusted.overlay."
	paxXattrPrefix     = "SCHILY.xattr."
)

// Stats describes what a layer put on disk, for filesystem usage accounting.
type Stats struct {
	Bytes  int64 // regular file content
	Inodes int64 // entries created (hardlinks excluded)
}

type applier struct {
	root string
	buf  []byte
	// dirs that were verified symlink-free and exist, so that deep trees are not re-resolved.
	verified map[string]bool
	// directory times are applied last: creating children would overwrite them.
	dirTimes map[string]*tar.Header
	stats    Stats
}

// Apply extracts the tar stream r into root, which must exist. Any entry with an absolute
// path, a ".." escaping root, or a parent path through a symlink fails the whole apply.
func Apply(ctx context.Context, root string, r io.Reader) (Stats, error) {
	a := &applier{
		root:     filepath.Clean(root),
		buf:      make([]byte, 1<<20),
		verified: map[string]bool{},
		dirTimes: map[string]*tar.Header{},
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return a.stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return a.stats, fmt.Errorf("read tar: %w", err)
		}
		if err := a.entry(hdr, tr); err != nil {
			return a.stats, fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
	}
	for p, hdr := range a.dirTimes {
		if err := setTimes(p, hdr); err != nil {
			return a.stats, fmt.Errorf("set times of %q: %w", p, err)
		}
	}
	return a.stats, nil
}

// isSparse reports a GNU sparse entry: the old GNU type, or a PAX one (GNU.sparse.* records,
// formats 0.0 to 1.0), which archive/tar reports as a regular file.
func isSparse(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// cleanName turns a tar path into a clean path relative to root, refusing escapes.
func cleanName(name string) (string, error) {
	if strings.HasPrefix(name, "/") {
		return "", fmt.Errorf("absolute path %q: %w", name, ErrBreakout)
	}
	rel := path.Clean(name)
	if rel == ".." || strings.HasPrefix(rel, "../") {
		return "", fmt.Errorf("path %q leaves the root: %w", name, ErrBreakout)
	}
	return rel, nil
}

// parentDir returns the host path of dir (relative, clean), creating it if missing.
// If resolving it inside root would traverse a symlink, the entry is refused rather than
// re-rooted: a layer never legitimately writes through its own symlinks.
func (a *applier) parentDir(dir string, create bool) (string, error) {
	if dir == "" || dir == "." {
		return a.root, nil
	}
	lexical := filepath.Join(a.root, dir)
	if a.verified[dir] {
		return lexical, nil
	}
	resolved, err := securejoin.SecureJoin(a.root, dir)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", dir, err)
	}
	if resolved != lexical {
		return "", fmt.Errorf("parent %q goes through a symlink: %w", dir, ErrBreakout)
	}
	if create {
		if err := os.MkdirAll(lexical, 0o755); err != nil {
			return "", err
		}
	} else if fi, err := os.Lstat(lexical); err != nil {
		return "", err
	} else if !fi.IsDir() {
		return "", fmt.Errorf("%q is not a directory", dir)
	}
	a.verified[dir] = true
	return lexical, nil
}

func (a *applier) entry(hdr *tar.Header, r io.Reader) error {
	if isSparse(hdr) {
		// A sparse entry's size is not backed by bytes of the layer: reading it back
		// expands holes into zeros, so a few KiB of tar could write terabytes.
		return fmt.Errorf("sparse files are not supported (%d bytes from a few of the layer)", hdr.Size)
	}
	rel, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("root entry is not a directory")
		}
		a.dirTimes[a.root] = hdr
		return a.setMeta(a.root, hdr)
	}
	dir, base := path.Split(rel)
	parent, err := a.parentDir(strings.TrimSuffix(dir, "/"), true)
	if err != nil {
		return err
	}
	if base == opaqueMarker {
		return unix.Lsetxattr(parent, overlayXattrPrefix+"opaque", []byte("y"), 0)
	}
	if name, ok := strings.CutPrefix(base, whiteoutPrefix); ok {
		if name == "" || name == "." || name == ".." {
			return fmt.Errorf("invalid whiteout %q", base)
		}
		target := filepath.Join(parent, name)
		if err := a.removeExisting(target); err != nil {
			return err
		}
		a.stats.Inodes++
		return unix.Mknod(target, unix.S_IFCHR, 0)
	}
	target := filepath.Join(parent, base)
	if err := a.prepareTarget(target, hdr); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := os.Mkdir(target, 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		a.dirTimes[target] = hdr
	case tar.TypeReg, tar.TypeRegA:
		if err := a.writeFile(target, r); err != nil {
			return err
		}
		a.stats.Bytes += hdr.Size
	case tar.TypeSymlink:
		if err := os.Symlink(hdr.Linkname, target); err != nil {
			return err
		}
	case tar.TypeLink:
		return a.hardlink(target, hdr.Linkname)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(unix.S_IFCHR)
		switch hdr.Typeflag {
		case tar.TypeBlock:
			mode = unix.S_IFBLK
		case tar.TypeFifo:
			mode = unix.S_IFIFO
		}
		if err := unix.Mknod(target, mode|uint32(hdr.Mode&0o7777), int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
	a.stats.Inodes++
	if err := a.setMeta(target, hdr); err != nil {
		return err
	}
	if hdr.Typeflag != tar.TypeDir {
		return setTimes(target, hdr)
	}
	return nil
}

// prepareTarget clears the way for a new entry: a later entry for the same path replaces
// the earlier one, except that a directory over a directory merges.
func (a *applier) prepareTarget(target string, hdr *tar.Header) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() && hdr.Typeflag == tar.TypeDir {
		return nil
	}
	return a.removeExisting(target)
}

func (a *applier) removeExisting(target string) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		// Directories below may have been verified; a replacement could be a symlink.
		clear(a.verified)
		// Their pending times go too: applied at the end, they would land below whatever
		// replaces target, which may be a symlink out of the root.
		for p := range a.dirTimes {
			if p == target || strings.HasPrefix(p, target+"/") {
				delete(a.dirTimes, p)
			}
		}
	}
	return os.RemoveAll(target)
}

func (a *applier) writeFile(target string, r io.Reader) error {
	f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.CopyBuffer(f, r, a.buf); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// hardlink links target to an earlier entry of the same layer; link(2) does not follow a
// symlink in the last component, so the source's parent is all that needs checking.
func (a *applier) hardlink(target, linkname string) error {
	rel, err := cleanName(linkname)
	if err != nil {
		return err
	}
	if rel == "." {
		return fmt.Errorf("hardlink to the root: %w", ErrBreakout)
	}
	dir, base := path.Split(rel)
	parent, err := a.parentDir(strings.TrimSuffix(dir, "/"), false)
	if err != nil {
		return fmt.Errorf("hardlink source %q: %w", linkname, err)
	}
	src := filepath.Join(parent, base)
	if _, err := os.Lstat(src); err != nil {
		return fmt.Errorf("hardlink source %q: %w", linkname, err)
	}
	return os.Link(src, target)
}

// setMeta applies ownership, xattrs and mode; chmod comes after chown because chown
// clears setuid/setgid bits.
func (a *applier) setMeta(target string, hdr *tar.Header) error {
	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return err
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, paxXattrPrefix)
		if !ok || strings.HasPrefix(name, overlayXattrPrefix) {
			continue
		}
		if err := unix.Lsetxattr(target, name, []byte(v), 0); err != nil && !errors.Is(err, unix.ENOTSUP) {
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	if hdr.Typeflag == tar.TypeSymlink {
		return nil
	}
	return unix.Fchmodat(unix.AT_FDCWD, target, uint32(hdr.Mode&0o7777), 0)
}

func setTimes(target string, hdr *tar.Header) error {
	atime := hdr.AccessTime
	if atime.IsZero() {
		atime = hdr.ModTime
	}
	ts := []unix.Timespec{toTimespec(atime), toTimespec(hdr.ModTime)}
	return unix.UtimesNanoAt(unix.AT_FDCWD, target, ts, unix.AT_SYMLINK_NOFOLLOW)
}

func toTimespec(t time.Time) unix.Timespec {
	if t.IsZero() || t.Before(time.Unix(0, 0)) {
		return unix.NsecToTimespec(0)
	}
	return unix.NsecToTimespec(t.UnixNano())
}
