package images

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/images/unpack"
)

// installRequest is an image to store, from a registry or an archive.
type installRequest struct {
	img       v1.Image
	names     []string // normalised tags and repo digests to point at it
	topDigest string   // index digest when the image was selected from an index
	topRaw    []byte
	source    string // for logs
	// uncompressed reads layers through Uncompressed(): archive layers are often stored
	// uncompressed and ggcr would gzip them just to hand them over.
	uncompressed bool
}

// install stores manifests and config, unpacks missing layers in parallel and commits the
// image record. Nothing the image needs is visible to GC as garbage meanwhile.
func (s *Service) install(ctx context.Context, req installRequest) (Image, error) {
	manifestRaw, err := req.img.RawManifest()
	if err != nil {
		return Image{}, fmt.Errorf("read manifest: %w", err)
	}
	manifestDigest, err := req.img.Digest()
	if err != nil {
		return Image{}, fmt.Errorf("manifest digest: %w", err)
	}
	manifest, err := req.img.Manifest()
	if err != nil {
		return Image{}, fmt.Errorf("parse manifest %s: %w", manifestDigest, err)
	}
	configRaw, err := req.img.RawConfigFile()
	if err != nil {
		return Image{}, fmt.Errorf("read config: %w", err)
	}
	configDigest := digestOf(configRaw)
	config, err := v1.ParseConfigFile(bytes.NewReader(configRaw))
	if err != nil {
		return Image{}, fmt.Errorf("parse config %s: %w: %w", configDigest, errdefs.ErrInvalidArgument, err)
	}
	layers, err := req.img.Layers()
	if err != nil {
		return Image{}, fmt.Errorf("layers of %s: %w", manifestDigest, err)
	}
	diffIDs := config.RootFS.DiffIDs
	if len(diffIDs) != len(layers) {
		return Image{}, fmt.Errorf("image %s: %d layers but %d diff ids in config: %w", manifestDigest, len(layers), len(diffIDs), errdefs.ErrInvalidArgument)
	}
	chain := chainIDs(diffIDs)
	blobs := []string{manifestDigest.String(), configDigest}
	if req.topDigest != "" {
		blobs = append(blobs, req.topDigest)
	}
	held := append(append([]string{}, chain...), blobs...)
	s.hold(held)
	defer s.release(held)

	if err := s.content.Put(manifestDigest.String(), manifestRaw); err != nil {
		return Image{}, err
	}
	if err := s.content.Put(configDigest, configRaw); err != nil {
		return Image{}, err
	}
	if req.topDigest != "" {
		if err := s.content.Put(req.topDigest, req.topRaw); err != nil {
			return Image{}, err
		}
	}
	if err := s.unpackLayers(ctx, layers, diffIDs, chain, req.uncompressed); err != nil {
		return Image{}, err
	}
	var size uint64
	for _, l := range manifest.Layers {
		size += uint64(l.Size)
	}
	rec := imageRecord{ID: configDigest, Chain: chain, Blobs: blobs, Size: size, Created: time.Now().UTC()}
	err = s.db.Update(func(tx *bolt.Tx) error {
		rec, err = commitImage(tx, rec, req.names)
		return err
	})
	if err != nil {
		return Image{}, fmt.Errorf("commit image %s: %w", configDigest, err)
	}
	return s.toImage(rec)
}

func (s *Service) unpackLayers(ctx context.Context, layers []v1.Layer, diffIDs []v1.Hash, chain []string, uncompressed bool) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(s.opts.MaxConcurrentDownloads)
	for i, l := range layers {
		if s.hasSnapshot(chain[i]) {
			continue
		}
		parent := ""
		if i > 0 {
			parent = chain[i-1]
		}
		// Every layer is unpacked into its own directory, in overlay form, so layers do not
		// need their parents on disk and all of them can stream at once.
		g.Go(func() error {
			return s.unpackLayer(ctx, l, diffIDs[i].String(), chain[i], parent, uncompressed)
		})
	}
	return g.Wait()
}

func (s *Service) hasSnapshot(chainID string) bool {
	var ok bool
	_ = s.db.View(func(tx *bolt.Tx) error {
		ok = tx.Bucket(bucketSnapshots).Get([]byte(chainID)) != nil
		return nil
	})
	return ok
}

// unpackLayer streams one layer from its source through decompression into the unpacker,
// verifying both digests on the way; the snapshot appears only once it is complete.
func (s *Service) unpackLayer(ctx context.Context, l v1.Layer, diffID, chainID, parent string, uncompressed bool) (err error) {
	dgst, err := l.Digest()
	if err != nil {
		return fmt.Errorf("layer digest: %w", err)
	}
	tmp, err := os.MkdirTemp(s.snapDir, "tmp-")
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", dgst, noSpace(dgst, err))
	}
	defer func() {
		if err != nil {
			os.RemoveAll(tmp)
		}
	}()
	fs := filepath.Join(tmp, "fs")
	if err := os.Mkdir(fs, 0o755); err != nil {
		return fmt.Errorf("unpack layer %s: %w", dgst, noSpace(dgst, err))
	}
	stats, err := s.streamLayer(ctx, l, fs, diffID, uncompressed)
	if errors.Is(err, unix.ENOSPC) {
		return noSpace(dgst, err)
	}
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", dgst, err)
	}
	if err := syncFS(fs); err != nil {
		return fmt.Errorf("sync layer %s: %w", dgst, noSpace(dgst, err))
	}
	return s.commitSnapshot(tmp, chainID, snapshotRecord{Parent: parent, DiffID: diffID, Bytes: stats.Bytes, Inodes: stats.Inodes})
}

func (s *Service) streamLayer(ctx context.Context, l v1.Layer, fs, diffID string, uncompressed bool) (unpack.Stats, error) {
	var rc io.ReadCloser
	var err error
	if uncompressed {
		rc, err = l.Uncompressed()
	} else {
		// ggcr verifies size and digest of the compressed stream as it is read.
		rc, err = l.Compressed()
	}
	if err != nil {
		return unpack.Stats{}, fmt.Errorf("open: %w", err)
	}
	defer rc.Close()
	tar, err := decompress(rc)
	if err != nil {
		return unpack.Stats{}, err
	}
	defer tar.Close()
	h := sha256.New()
	stats, err := unpack.Apply(ctx, fs, io.TeeReader(tar, h))
	if err != nil {
		return stats, err
	}
	// The tar reader stops at the end-of-archive marker; the diff id covers the padding too,
	// and the compressed stream must be read to its end for its digest to be checked.
	if _, err := io.Copy(h, tar); err != nil {
		return stats, fmt.Errorf("read layer tail: %w", err)
	}
	if _, err := io.Copy(io.Discard, rc); err != nil {
		return stats, fmt.Errorf("verify layer: %w: %w", errdefs.ErrDataLoss, err)
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != diffID {
		return stats, fmt.Errorf("uncompressed content has digest %s, config says %s: %w", got, diffID, errdefs.ErrDataLoss)
	}
	return stats, nil
}

// decompress sniffs the stream rather than trusting the media type: registries and archive
// writers mislabel layers, and the magic numbers are unambiguous.
func decompress(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	magic, err := br.Peek(4)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read layer header: %w", err)
	}
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(br), nil
}

// commitSnapshot renames a complete temp dir to snapshots/<n> and records it. When another
// pull committed the same chain meanwhile, ours is dropped and theirs used.
func (s *Service) commitSnapshot(tmp, chainID string, rec snapshotRecord) error {
	dup := false
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		if b.Get([]byte(chainID)) != nil {
			dup = true
			return nil
		}
		n, err := b.NextSequence()
		if err != nil {
			return err
		}
		rec.N = n
		if err := os.Rename(tmp, s.snapshotPath(n)); err != nil {
			return err
		}
		return put(b, chainID, rec)
	})
	if err != nil {
		return fmt.Errorf("commit snapshot %s: %w", chainID, err)
	}
	if dup {
		return os.RemoveAll(tmp)
	}
	return nil
}

// chainIDs follows the OCI image spec: ChainID(L0) = DiffID(L0),
// ChainID(L0..Ln) = sha256(ChainID(L0..Ln-1) + " " + DiffID(Ln)).
func chainIDs(diffIDs []v1.Hash) []string {
	out := make([]string, len(diffIDs))
	for i, d := range diffIDs {
		if i == 0 {
			out[i] = d.String()
			continue
		}
		out[i] = digestOf([]byte(out[i-1] + " " + d.String()))
	}
	return out
}

func digestOf(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// syncFS flushes the snapshot before it is renamed into place: the filesystem has no
// journal, and a committed snapshot with lost data would be silently corrupt.
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
}

func noSpace(layer v1.Hash, err error) error {
	if errors.Is(err, unix.ENOSPC) {
		return fmt.Errorf("no space left on device writing layer %s: %w: %w", layer, errdefs.ErrResourceExhausted, err)
	}
	return err
}
