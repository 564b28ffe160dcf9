package images

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

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/berth-runtime/berth/pkg/images/reference"
)

const (
	annotationRefName       = "org.opencontainers.image.ref.name"
	annotationContainerdRef = "io.containerd.image.name"
)

// Import loads an OCI image layout tarball (index.json + blobs/, named by the
// org.opencontainers.image.ref.name annotation) or a docker-archive (manifest.json with
// RepoTags), for nodes without registry access. The archive is spooled to ingest/ first
// because both formats need random access.
func (s *Service) Import(ctx context.Context, r io.Reader) ([]Image, error) {
	spool, err := os.CreateTemp(s.content.IngestDir(), "import-*.tar")
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.Remove(spool.Name())
	defer spool.Close()
	if _, err := io.Copy(spool, r); err != nil {
		return nil, fmt.Errorf("import: spool archive: %w", err)
	}
	entries, err := tarEntries(spool.Name())
	if err != nil {
		return nil, fmt.Errorf("import: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	switch {
	case entries["manifest.json"]:
		return s.importDockerArchive(ctx, spool.Name())
	case entries["index.json"]:
		return s.importOCILayout(ctx, spool.Name())
	}
	return nil, fmt.Errorf("import: neither an OCI layout (index.json) nor a docker archive (manifest.json): %w", errdefs.ErrInvalidArgument)
}

func tarEntries(file string) (map[string]bool, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
		out[path.Clean(hdr.Name)] = true
	}
}

func (s *Service) importDockerArchive(ctx context.Context, file string) ([]Image, error) {
	opener := func() (io.ReadCloser, error) { return os.Open(file) }
	manifest, err := tarball.LoadManifest(opener)
	if err != nil {
		return nil, fmt.Errorf("import docker archive: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	var out []Image
	for _, m := range manifest {
		var tag *name.Tag
		var names []string
		for _, rt := range m.RepoTags {
			ref, err := reference.Parse(rt)
			if err != nil {
				return out, fmt.Errorf("import docker archive: %w", err)
			}
			names = append(names, ref.Tagged())
			if tag == nil {
				t, err := name.NewTag(rt)
				if err != nil {
					return out, fmt.Errorf("import docker archive: tag %q: %w: %w", rt, errdefs.ErrInvalidArgument, err)
				}
				tag = &t
			}
		}
		if tag == nil && len(manifest) > 1 {
			return out, fmt.Errorf("import docker archive: untagged image %s among several: %w", m.Config, errdefs.ErrInvalidArgument)
		}
		img, err := tarball.Image(opener, tag)
		if err != nil {
			return out, fmt.Errorf("import docker archive %s: %w", m.Config, err)
		}
		got, err := s.install(ctx, installRequest{img: img, names: names, source: "docker-archive", uncompressed: true})
		if err != nil {
			return out, fmt.Errorf("import %s: %w", m.Config, err)
		}
		out = append(out, got)
	}
	return out, nil
}

func (s *Service) importOCILayout(ctx context.Context, file string) ([]Image, error) {
	dir, err := os.MkdirTemp(s.content.IngestDir(), "layout-")
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := extractLayout(file, dir); err != nil {
		return nil, fmt.Errorf("import OCI layout: %w", err)
	}
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("import OCI layout: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, fmt.Errorf("import OCI layout: index.json: %w: %w", errdefs.ErrInvalidArgument, err)
	}
	var out []Image
	for _, desc := range im.Manifests {
		req, err := layoutImage(idx, desc)
		if err != nil {
			return out, fmt.Errorf("import OCI layout: %s: %w", desc.Digest, err)
		}
		got, err := s.install(ctx, req)
		if err != nil {
			return out, fmt.Errorf("import %s: %w", desc.Digest, err)
		}
		out = append(out, got)
	}
	return out, nil
}

// layoutImage selects this platform's image for an index.json entry and names it from its
// annotations. A bare tag ("1.36", allowed by the spec) has no repository to name, so such
// an image is kept by id only.
func layoutImage(idx v1.ImageIndex, desc v1.Descriptor) (installRequest, error) {
	req := installRequest{source: "oci-layout"}
	switch {
	case desc.MediaType.IsImage():
		img, err := idx.Image(desc.Digest)
		if err != nil {
			return req, err
		}
		req.img = img
	case desc.MediaType.IsIndex():
		child, err := idx.ImageIndex(desc.Digest)
		if err != nil {
			return req, err
		}
		cm, err := child.IndexManifest()
		if err != nil {
			return req, err
		}
		want := hostPlatform()
		for _, m := range cm.Manifests {
			if m.Platform != nil && m.Platform.Satisfies(want) && m.MediaType.IsImage() {
				if req.img, err = child.Image(m.Digest); err != nil {
					return req, err
				}
				break
			}
		}
		if req.img == nil {
			return req, fmt.Errorf("no image for %s: %w", want, errdefs.ErrNotFound)
		}
		raw, err := child.RawManifest()
		if err != nil {
			return req, err
		}
		req.topDigest, req.topRaw = desc.Digest.String(), raw
	default:
		return req, fmt.Errorf("unsupported media type %q: %w", desc.MediaType, errdefs.ErrInvalidArgument)
	}
	refName := desc.Annotations[annotationContainerdRef]
	if refName == "" {
		refName = desc.Annotations[annotationRefName]
	}
	if refName != "" && strings.ContainsAny(refName, "/:@") {
		r, err := reference.Parse(refName)
		if err != nil {
			return req, err
		}
		if t := r.Tagged(); t != "" {
			req.names = append(req.names, t)
		}
		req.names = append(req.names, r.Name()+"@"+desc.Digest.String())
	}
	return req, nil
}

// extractLayout unpacks the layout's regular files; it is a plain file tree, so anything
// else (links, devices, escaping paths) is refused rather than interpreted.
func extractLayout(file, dir string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("read archive: %w", err)
		}
		rel := path.Clean(hdr.Name)
		if path.IsAbs(rel) || rel == ".." || strings.HasPrefix(rel, "../") {
			return fmt.Errorf("entry %q escapes the layout: %w", hdr.Name, errdefs.ErrInvalidArgument)
		}
		target := filepath.Join(dir, rel)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(target, 0o700); err != nil {
				return err
			}
		case tar.TypeReg:
			if err := os.MkdirAll(filepath.Dir(target), 0o700); err != nil {
				return err
			}
			if err := writeNew(target, tr); err != nil {
				return err
			}
		default:
			return fmt.Errorf("entry %q: unexpected type %q in OCI layout: %w", hdr.Name, hdr.Typeflag, errdefs.ErrInvalidArgument)
		}
	}
}

func writeNew(p string, r io.Reader) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, r)
	return errors.Join(err, f.Close())
}
