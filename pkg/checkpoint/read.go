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

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// IsArchive reports whether the file at p is a tar holding config.dump and CRIU images,
// reading only its headers. A file that is no tar at all is not an archive (false, nil);
// a file that cannot be read is an error.
func IsArchive(p string) (bool, error) {
	f, err := os.Open(p)
	if err != nil {
		return false, err
	}
	defer f.Close()
	seen := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return false, nil
		}
		seen[topName(hdr.Name)] = true
	}
	return seen[ConfigDumpFile] && seen[SpecDumpFile] && seen[ImagesDir], nil
}

func topName(name string) string {
	name = strings.TrimPrefix(path.Clean("/"+name), "/")
	top, _, _ := strings.Cut(name, "/")
	return top
}

// Extract unpacks the archive at p into dest (an existing empty directory) and reads its
// metadata. Every path is resolved inside dest (os.Root); only regular files and
// directories are accepted. An archive that is not a checkpoint, or whose metadata is
// newer than this berth understands, is errdefs.ErrInvalidArgument.
func Extract(ctx context.Context, p, dest string) (Contents, error) {
	f, err := os.Open(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return Contents{}, fmt.Errorf("checkpoint archive %q: %w", p, errdefs.ErrNotFound)
		}
		return Contents{}, fmt.Errorf("open checkpoint archive %q: %w", p, err)
	}
	defer f.Close()
	root, err := os.OpenRoot(dest)
	if err != nil {
		return Contents{}, fmt.Errorf("open %s: %w", dest, err)
	}
	defer root.Close()
	if err := extractTar(ctx, root, f); err != nil {
		return Contents{}, fmt.Errorf("extract checkpoint archive %q: %w", p, err)
	}
	c, err := Load(dest)
	if err != nil {
		return Contents{}, fmt.Errorf("checkpoint archive %q: %w", p, err)
	}
	return c, nil
}

func extractTar(ctx context.Context, root *os.Root, r io.Reader) error {
	return eachEntry(ctx, r, func(hdr *tar.Header, r io.Reader) error { return extractEntry(root, hdr, r) })
}

// eachEntry calls fn for every entry of the tar stream r, checking ctx between entries. A
// stream that does not read as tar is InvalidArgument; fn's errors name the entry.
func eachEntry(ctx context.Context, r io.Reader, fn func(*tar.Header, io.Reader) error) error {
	tr := tar.NewReader(r)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a tar archive: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(hdr, tr); err != nil {
			return fmt.Errorf("%s: %w", hdr.Name, err)
		}
	}
}

func extractEntry(root *os.Root, hdr *tar.Header, r io.Reader) error {
	name := path.Clean(strings.TrimPrefix(hdr.Name, "/"))
	if name == "." {
		return nil
	}
	if dir := path.Dir(name); dir != "." {
		if err := root.MkdirAll(dir, 0o700); err != nil {
			return err
		}
	}
	switch hdr.Typeflag {
	case tar.TypeDir:
		if err := root.Mkdir(name, 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		return nil
	case tar.TypeReg:
		return writeEntry(root, name, 0o600, r)
	default:
		return fmt.Errorf("entry type %q in a checkpoint archive: %w", hdr.Typeflag, errdefs.ErrInvalidArgument)
	}
}

// ExtractLayers copies an unpacked checkpoint image into dest (an existing empty directory)
// and reads its metadata, as Extract does an archive. layers are the image's layer
// directories, topmost first (as the image store lists them); a checkpoint image is an
// archive's files in one layer. Only regular files and directories are taken.
func ExtractLayers(ctx context.Context, layers []string, dest string) (Contents, error) {
	root, err := os.OpenRoot(dest)
	if err != nil {
		return Contents{}, fmt.Errorf("open %s: %w", dest, err)
	}
	defer root.Close()
	for i := len(layers) - 1; i >= 0; i-- {
		if err := copyLayer(ctx, root, layers[i]); err != nil {
			return Contents{}, fmt.Errorf("copy checkpoint image layer %s: %w", layers[i], err)
		}
	}
	return Load(dest)
}

func copyLayer(ctx context.Context, root *os.Root, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil || rel == "." {
			return err
		}
		switch {
		case d.IsDir():
			return root.MkdirAll(rel, 0o700)
		case d.Type().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			return writeEntry(root, rel, 0o600, f)
		default:
			return fmt.Errorf("%s: not a regular file or directory: %w", rel, errdefs.ErrInvalidArgument)
		}
	})
}

// Load reads the metadata of an extracted archive in dir.
func Load(dir string) (Contents, error) {
	c := Contents{ImagesDir: filepath.Join(dir, ImagesDir)}
	if info, err := os.Stat(c.ImagesDir); err != nil || !info.IsDir() {
		return Contents{}, fmt.Errorf("not a checkpoint: no %s/ directory: %w", ImagesDir, errdefs.ErrInvalidArgument)
	}
	if err := readJSON(dir, ConfigDumpFile, &c.Config); err != nil {
		return Contents{}, err
	}
	if c.Config.Version > Version {
		return Contents{}, fmt.Errorf("checkpoint metadata version %d is newer than %d: %w", c.Config.Version, Version, errdefs.ErrInvalidArgument)
	}
	c.Spec = &specs.Spec{}
	if err := readJSON(dir, SpecDumpFile, c.Spec); err != nil {
		return Contents{}, err
	}
	if c.Spec.Process == nil || c.Spec.Root == nil {
		return Contents{}, fmt.Errorf("%s has no process or root: %w", SpecDumpFile, errdefs.ErrInvalidArgument)
	}
	// status.dump is berth's: archives of other engines lack it.
	if err := readJSON(dir, StatusDumpFile, &c.Status); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return Contents{}, err
	}
	return c, nil
}

func readJSON(dir, name string, v any) error {
	data, err := os.ReadFile(filepath.Join(dir, name))
	if errors.Is(err, fs.ErrNotExist) {
		if name == StatusDumpFile {
			return err
		}
		return fmt.Errorf("not a checkpoint: no %s: %w", name, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", name, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("decode %s: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return nil
}
