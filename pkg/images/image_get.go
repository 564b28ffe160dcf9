package images

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	bolt "go.etcd.io/bbolt"

	"github.com/berth-runtime/berth/pkg/images/reference"
)

// Get finds an image by name[:tag], name@digest, id ("sha256:<hex>" or bare hex) or an
// unambiguous id prefix. Unknown is errdefs.ErrNotFound; an ambiguous prefix or a malformed
// reference is errdefs.ErrInvalidArgument.
func (s *Service) Get(ctx context.Context, ref string) (Image, error) {
	var rec imageRecord
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		rec, err = resolve(tx, ref)
		return err
	})
	if err != nil {
		return Image{}, err
	}
	return s.toImage(rec)
}

// List returns every image, including those that lost all their names.
func (s *Service) List(ctx context.Context) ([]Image, error) {
	var recs []imageRecord
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketImages).ForEach(func(_, v []byte) error {
			rec, err := decode[imageRecord](v)
			recs = append(recs, rec)
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("list images: %w", err)
	}
	out := make([]Image, 0, len(recs))
	for _, rec := range recs {
		img, err := s.toImage(rec)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// resolve looks ref up in the order docker does: a full id, a name, then an id prefix.
func resolve(tx *bolt.Tx, ref string) (imageRecord, error) {
	if id, ok := reference.ParseID(ref); ok {
		if rec, ok, err := getImage(tx, id); ok || err != nil {
			return rec, err
		}
	}
	r, parseErr := reference.Parse(ref)
	if parseErr == nil {
		nb := tx.Bucket(bucketNames)
		for _, n := range []string{r.String(), r.Digested()} {
			if n == "" {
				continue
			}
			if id := nb.Get([]byte(n)); id != nil {
				rec, ok, err := getImage(tx, string(id))
				if err != nil {
					return rec, err
				}
				if ok {
					return rec, nil
				}
			}
		}
	}
	if pfx, ok := reference.IDPrefix(ref); ok {
		return resolvePrefix(tx, ref, "sha256:"+pfx)
	}
	if parseErr != nil {
		return imageRecord{}, parseErr
	}
	return imageRecord{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
}

func resolvePrefix(tx *bolt.Tx, ref, prefix string) (imageRecord, error) {
	c := tx.Bucket(bucketImages).Cursor()
	var found []imageRecord
	for k, v := c.Seek([]byte(prefix)); k != nil && bytes.HasPrefix(k, []byte(prefix)); k, v = c.Next() {
		rec, err := decode[imageRecord](v)
		if err != nil {
			return rec, err
		}
		found = append(found, rec)
	}
	switch len(found) {
	case 0:
		return imageRecord{}, fmt.Errorf("image %q: %w", ref, errdefs.ErrNotFound)
	case 1:
		return found[0], nil
	}
	return imageRecord{}, fmt.Errorf("image id prefix %q matches %d images: %w", ref, len(found), errdefs.ErrInvalidArgument)
}

type parsedConfig struct {
	cfg ImageConfig
	raw []byte
	// annotations are the manifest's, read once (annotations.go).
	annOnce     sync.Once
	annotations map[string]string
}

func (s *Service) toImage(rec imageRecord) (Image, error) {
	img := Image{ID: rec.ID, Size: rec.Size, Pinned: s.live.Load().pinned.pins(rec.ID, rec.Names)}
	for _, n := range rec.Names {
		if reference.IsDigested(n) {
			img.RepoDigests = append(img.RepoDigests, n)
		} else {
			img.RepoTags = append(img.RepoTags, n)
		}
	}
	pc, err := s.config(rec.ID)
	if err != nil {
		return Image{}, err
	}
	img.Config, img.ConfigJSON = pc.cfg, pc.raw
	pc.annOnce.Do(func() { pc.annotations = s.manifestAnnotations(rec) })
	img.Annotations = pc.annotations
	return img, nil
}

func (s *Service) config(id string) (*parsedConfig, error) {
	if v, ok := s.configs.Load(id); ok {
		return v.(*parsedConfig), nil
	}
	raw, err := s.content.Get(id)
	if err != nil {
		return nil, fmt.Errorf("config of image %s: %w", id, err)
	}
	cf, err := v1.ParseConfigFile(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("parse config of image %s: %w", id, err)
	}
	c := cf.Config
	pc := &parsedConfig{raw: raw, cfg: ImageConfig{
		User: c.User, WorkingDir: c.WorkingDir, StopSignal: c.StopSignal,
		Env: c.Env, Entrypoint: c.Entrypoint, Cmd: c.Cmd, Labels: c.Labels,
	}}
	for v := range c.Volumes {
		pc.cfg.Volumes = append(pc.cfg.Volumes, v)
	}
	slices.Sort(pc.cfg.Volumes)
	s.configs.Store(id, pc)
	return pc, nil
}

// Remove deletes the image ref resolves to, with all its names; an unknown image is not
// an error (the CRI wants RemoveImage idempotent). Its files go in the background.
func (s *Service) Remove(ctx context.Context, ref string) error {
	var id string
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := resolve(tx, ref)
		if err != nil {
			return err
		}
		id = rec.ID
		return deleteImage(tx, rec)
	})
	if errors.Is(err, errdefs.ErrNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove image %q: %w", ref, err)
	}
	s.configs.Delete(id)
	s.log.Info("removed image", "ref", ref, "id", id)
	s.kickGC()
	return nil
}

// Lowers returns the snapshot directories of an image, topmost layer first, as overlayfs
// wants them in lowerdir.
func (s *Service) Lowers(ctx context.Context, imageID string) ([]string, error) {
	var dirs []string
	err := s.db.View(func(tx *bolt.Tx) error {
		rec, err := resolve(tx, imageID)
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketSnapshots)
		for i := len(rec.Chain) - 1; i >= 0; i-- {
			v := b.Get([]byte(rec.Chain[i]))
			if v == nil {
				return fmt.Errorf("image %s: snapshot %s missing (pull the image again): %w", rec.ID, rec.Chain[i], errdefs.ErrFailedPrecondition)
			}
			snap, err := decode[snapshotRecord](v)
			if err != nil {
				return err
			}
			dirs = append(dirs, s.snapshotPath(snap.N)+"/fs")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("lowers of %q: %w", imageID, err)
	}
	return dirs, nil
}

// Lease keeps imageID's snapshots on disk for owner (a container) even if the image is
// removed; one lease per owner, a new one replaces the old.
func (s *Service) Lease(ctx context.Context, owner, imageID string) error {
	if strings.TrimSpace(owner) == "" {
		return fmt.Errorf("lease: empty owner: %w", errdefs.ErrInvalidArgument)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		rec, err := resolve(tx, imageID)
		if err != nil {
			return err
		}
		return put(tx.Bucket(bucketLeases), owner, leaseRecord{ImageID: rec.ID, Chain: rec.Chain})
	})
	if err != nil {
		return fmt.Errorf("lease image %q for %s: %w", imageID, owner, err)
	}
	return nil
}

// Unlease drops owner's lease; a missing lease is not an error.
func (s *Service) Unlease(ctx context.Context, owner string) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).Delete([]byte(owner))
	})
	if err != nil {
		return fmt.Errorf("unlease %s: %w", owner, err)
	}
	s.kickGC()
	return nil
}
