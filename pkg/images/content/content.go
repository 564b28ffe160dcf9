// Package content stores small immutable blobs (manifests, indexes, image configs) by
// digest: written to ingest/, verified, fsynced and renamed into blobs/sha256/<hex>.
package content

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Store is a directory of blobs named by their sha256 digest.
type Store struct {
	blobs  string // <root>/blobs/sha256
	ingest string // <root>/ingest
}

// New opens the store under root, creating it, and empties ingest/: anything there is
// from a write that never completed.
func New(root string) (*Store, error) {
	s := &Store{blobs: filepath.Join(root, "blobs", "sha256"), ingest: filepath.Join(root, "ingest")}
	if err := os.RemoveAll(s.ingest); err != nil {
		return nil, fmt.Errorf("clean ingest dir: %w", err)
	}
	for _, d := range []string{s.blobs, s.ingest} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create %s: %w", d, err)
		}
	}
	return s, nil
}

// IngestDir is where partial files live; it is wiped by New.
func (s *Store) IngestDir() string { return s.ingest }

func (s *Store) path(dgst string) (string, error) {
	h, ok := strings.CutPrefix(dgst, "sha256:")
	if !ok || len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		return "", fmt.Errorf("digest %q: %w", dgst, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(s.blobs, h), nil
}

// Has reports whether the blob is committed.
func (s *Store) Has(dgst string) bool {
	p, err := s.path(dgst)
	if err != nil {
		return false
	}
	_, err = os.Stat(p)
	return err == nil
}

// Put verifies data against dgst and commits it; an existing blob is left as is.
func (s *Store) Put(dgst string, data []byte) error {
	p, err := s.path(dgst)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(data)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != dgst {
		return fmt.Errorf("blob %s: content has digest %s: %w", dgst, got, errdefs.ErrDataLoss)
	}
	if _, err := os.Stat(p); err == nil {
		return nil
	}
	f, err := os.CreateTemp(s.ingest, "blob-")
	if err != nil {
		return fmt.Errorf("write blob %s: %w", dgst, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write blob %s: %w", dgst, noSpace(err))
	}
	// The rename must not become visible before the data: the filesystem has no journal.
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync blob %s: %w", dgst, noSpace(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write blob %s: %w", dgst, noSpace(err))
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("commit blob %s: %w", dgst, err)
	}
	return syncDir(s.blobs)
}

// Get returns the blob's content; a missing blob is errdefs.ErrNotFound.
func (s *Store) Get(dgst string) ([]byte, error) {
	p, err := s.path(dgst)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("blob %s: %w", dgst, errdefs.ErrNotFound)
	}
	return data, err
}

// Delete removes the blob; a missing blob is not an error.
func (s *Store) Delete(dgst string) error {
	p, err := s.path(dgst)
	if err != nil {
		return err
	}
	if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("delete blob %s: %w", dgst, err)
	}
	return nil
}

// Walk calls fn for every committed blob.
func (s *Store) Walk(fn func(dgst string, size int64) error) error {
	ents, err := os.ReadDir(s.blobs)
	if err != nil {
		return err
	}
	for _, e := range ents {
		info, err := e.Info()
		if err != nil {
			continue
		}
		if err := fn("sha256:"+e.Name(), info.Size()); err != nil {
			return err
		}
	}
	return nil
}

func syncDir(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Fsync(fd)
}

func noSpace(err error) error {
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("no space left on device: %w: %w", errdefs.ErrResourceExhausted, err)
	}
	return err
}
