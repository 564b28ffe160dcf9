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
	"path/filepath"

	"github.com/containerd/errdefs"
)

// Write builds the archive at location (an absolute path in an existing directory). It
// writes a hidden temporary file beside location and renames it into place only when
// complete, so a failure or ctx ending (the request's timeout) leaves no partial archive.
// An existing file at location is replaced, as CRI-O does.
func Write(ctx context.Context, location string, c Contents) (err error) {
	if !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint location %q: not an absolute path: %w", location, errdefs.ErrInvalidArgument)
	}
	if c.ImagesDir == "" || c.Spec == nil {
		return fmt.Errorf("write checkpoint %q: no CRIU images or spec: %w", location, errdefs.ErrInvalidArgument)
	}
	dir := filepath.Dir(location)
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(location)+".partial-*")
	if err != nil {
		return fmt.Errorf("checkpoint location %q is not writable: %w: %w", location, err, errdefs.ErrInvalidArgument)
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := writeArchive(ctx, tmp, dir, c); err != nil {
		return fmt.Errorf("write checkpoint %q: %w", location, err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("write checkpoint %q: %w", location, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write checkpoint %q: %w", location, err)
	}
	if err := os.Rename(tmp.Name(), location); err != nil {
		return fmt.Errorf("write checkpoint %q: %w", location, err)
	}
	return nil
}

func writeArchive(ctx context.Context, w io.Writer, scratch string, c Contents) error {
	tw := tar.NewWriter(w)
	c.Config.Version = Version
	for _, f := range []struct {
		name string
		v    any
	}{{ConfigDumpFile, c.Config}, {SpecDumpFile, c.Spec}, {StatusDumpFile, c.Status}} {
		if err := addJSON(tw, f.name, f.v); err != nil {
			return err
		}
	}
	if err := addTree(ctx, tw, c.ImagesDir, ImagesDir); err != nil {
		return fmt.Errorf("add CRIU images: %w", err)
	}
	if c.UpperDir != "" {
		if err := addRootfsDiff(ctx, tw, scratch, c.UpperDir); err != nil {
			return err
		}
	}
	return tw.Close()
}

func addJSON(tw *tar.Writer, name string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", name, err)
	}
	return addBytes(tw, name, data)
}

func addBytes(tw *tar.Writer, name string, data []byte) error {
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	if _, err := tw.Write(data); err != nil {
		return fmt.Errorf("add %s: %w", name, err)
	}
	return nil
}

// addTree adds the regular files and directories below src under prefix. CRIU's image
// directory holds nothing else.
func addTree(ctx context.Context, tw *tar.Writer, src, prefix string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		name := filepath.ToSlash(filepath.Join(prefix, rel))
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return tw.WriteHeader(&tar.Header{Name: name + "/", Mode: 0o700, Typeflag: tar.TypeDir, ModTime: info.ModTime()})
		case info.Mode().IsRegular():
			return addFile(tw, path, name, info)
		default:
			return fmt.Errorf("%s: not a regular file or directory", path)
		}
	})
}

func addFile(tw *tar.Writer, path, name string, info fs.FileInfo) error {
	hdr, err := tar.FileInfoHeader(info, "")
	if err != nil {
		return err
	}
	hdr.Name = name
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	// A file that grew since the stat is cut at its header's size rather than failing.
	_, err = io.CopyN(tw, f, hdr.Size)
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: shrank while archived", path)
	}
	return err
}

// CheckLocation fails, as Write would, when location is not an absolute path in a
// writable directory; callers check before the costly CRIU dump.
func CheckLocation(location string) error {
	if !filepath.IsAbs(location) {
		return fmt.Errorf("checkpoint location %q: not an absolute path: %w", location, errdefs.ErrInvalidArgument)
	}
	f, err := os.CreateTemp(filepath.Dir(location), "."+filepath.Base(location)+".probe-*")
	if err != nil {
		return fmt.Errorf("checkpoint location %q is not writable: %w: %w", location, err, errdefs.ErrInvalidArgument)
	}
	f.Close()
	return os.Remove(f.Name())
}
