// Package images is the node's image store behind the CRI ImageService: it pulls images
// from registries (mirrors, auth), keeps manifests and configs by digest, names in bbolt,
// and layers unpacked as overlayfs snapshots, one per layer chain.
//
// Design choices:
//   - Compressed layer blobs are not kept. A layer is streamed once from the registry: the
//     compressed bytes are verified against the manifest digest while being decompressed
//     straight into the unpacker, and the uncompressed bytes are verified against the config's
//     diff id. The snapshot is the only copy, which halves the disk an image costs. The price:
//     an image cannot be re-exported or pushed from the node, which a CRI runtime never does.
//     Manifests, indexes and configs are kept (they are small and give Image.ConfigJSON).
//   - An image that loses its last tag (the tag moved to a new image) stays, reachable by id
//     and by its repo digest, like containerd; the kubelet's image GC removes it when unused.
//     Removing an image is always explicit.
//   - Garbage (snapshots and blobs no image or lease references) is found by mark and sweep
//     in a background goroutine kicked by Remove and Unlease, never inside Pull.
package images

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/berth-runtime/berth/pkg/images/content"
)

// Options configure the image service.
type Options struct {
	Root                   string        // <root>/images
	CertsDir               string        // /etc/berth/certs.d, hosts.toml per registry host
	InsecureRegistries     []string      // host[:port] allowed over plain http (loopback always is)
	PullProgressTimeout    time.Duration // a pull with no bytes for this long fails
	MaxConcurrentDownloads int
	Pinned                 []string // references or ids of images reported as pinned
	Logger                 *slog.Logger
}

const (
	defaultProgressTimeout = 5 * time.Minute
	defaultDownloads       = 3
)

// Auth are registry credentials as the kubelet passes them.
type Auth struct{ Username, Password, Auth, ServerAddress, IdentityToken, RegistryToken string }

// Image is an image as the CRI sees it.
type Image struct {
	ID          string   // "sha256:<config digest>"
	RepoTags    []string // normalised: docker.io/library/busybox:latest
	RepoDigests []string // docker.io/library/busybox@sha256:<manifest digest>
	Size        uint64   // sum of compressed layer sizes
	Config      ImageConfig
	ConfigJSON  []byte            // raw OCI image config, for verbose status
	Annotations map[string]string // the manifest's (a checkpoint image is marked there)
	Pinned      bool
}

// ImageConfig is the part of the OCI image config a container spec needs.
type ImageConfig struct {
	User, WorkingDir, StopSignal string
	Env, Entrypoint, Cmd         []string
	Volumes                      []string
	Labels                       map[string]string
}

// FsUsage is what the image filesystem holds.
type FsUsage struct {
	Mountpoint            string
	UsedBytes, InodesUsed uint64
}

// Service is the image store. It is safe for concurrent use.
type Service struct {
	opts    Options
	log     *slog.Logger
	db      *bolt.DB
	content *content.Store
	snapDir string
	flights flightGroup

	// mu guards inflight: chain ids and blob digests a running pull or import depends on
	// before its image record exists, so that GC leaves them alone.
	mu       sync.Mutex
	inflight map[string]int

	// gcRun serialises whole collections, sweep and removal together, so that
	// GC returning means every snapshot unreferenced at its call is gone, even
	// when the background collector had already swept it and was still removing.
	gcRun sync.Mutex

	gcKick  chan struct{}
	closing chan struct{}
	gcDone  chan struct{}
	configs sync.Map // image id -> *parsedConfig; configs are immutable per id
	// live holds the settings Reload may change (reload.go).
	live atomic.Pointer[liveSettings]
}

// New opens (creating if needed) the store under opts.Root and cleans what an interrupted
// pull left behind: partial downloads and snapshots that were never committed.
func New(opts Options) (*Service, error) {
	if opts.Root == "" {
		return nil, fmt.Errorf("images: root directory not set")
	}
	if opts.PullProgressTimeout <= 0 {
		opts.PullProgressTimeout = defaultProgressTimeout
	}
	if opts.MaxConcurrentDownloads <= 0 {
		opts.MaxConcurrentDownloads = defaultDownloads
	}
	live, err := newLiveSettings(Reloadable{CertsDir: opts.CertsDir, InsecureRegistries: opts.InsecureRegistries, Pinned: opts.Pinned})
	if err != nil {
		return nil, fmt.Errorf("images: %w", err)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Service{
		opts:     opts,
		log:      log,
		snapDir:  filepath.Join(opts.Root, "snapshots"),
		inflight: map[string]int{},
		gcKick:   make(chan struct{}, 1),
		closing:  make(chan struct{}),
		gcDone:   make(chan struct{}),
	}
	s.live.Store(live)
	s.flights.m = map[string]*flight{}
	if err := os.MkdirAll(s.snapDir, 0o700); err != nil {
		return nil, fmt.Errorf("create snapshot dir: %w", err)
	}
	cs, err := content.New(opts.Root)
	if err != nil {
		return nil, err
	}
	s.content = cs
	db, err := openDB(filepath.Join(opts.Root, "meta.db"))
	if err != nil {
		return nil, err
	}
	s.db = db
	if err := s.recoverSnapshots(); err != nil {
		db.Close()
		return nil, err
	}
	go s.gcLoop()
	s.kickGC()
	return s, nil
}

// Close stops background GC and closes the metadata database.
func (s *Service) Close() error {
	select {
	case <-s.closing:
		return nil
	default:
	}
	close(s.closing)
	<-s.gcDone
	return s.db.Close()
}

// recoverSnapshots removes snapshot dirs without a record (temp dirs of interrupted pulls,
// or dirs whose record removal committed before the crash) and records without a dir.
func (s *Service) recoverSnapshots() error {
	known := map[string]bool{}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSnapshots)
		var missing [][]byte
		err := b.ForEach(func(k, v []byte) error {
			rec, err := decode[snapshotRecord](v)
			if err != nil {
				return err
			}
			dir := s.snapshotPath(rec.N)
			if _, err := os.Stat(filepath.Join(dir, "fs")); err != nil {
				s.log.Warn("snapshot directory missing, dropping record", "chain", string(k), "dir", dir)
				missing = append(missing, k)
				return nil
			}
			known[filepath.Base(dir)] = true
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range missing {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("recover snapshots: %w", err)
	}
	ents, err := os.ReadDir(s.snapDir)
	if err != nil {
		return fmt.Errorf("recover snapshots: %w", err)
	}
	for _, e := range ents {
		if known[e.Name()] {
			continue
		}
		s.log.Info("removing incomplete snapshot", "dir", e.Name())
		if err := os.RemoveAll(filepath.Join(s.snapDir, e.Name())); err != nil {
			return fmt.Errorf("remove incomplete snapshot %s: %w", e.Name(), err)
		}
	}
	return nil
}

func (s *Service) hold(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		s.inflight[k]++
	}
}

func (s *Service) release(keys []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, k := range keys {
		if s.inflight[k]--; s.inflight[k] <= 0 {
			delete(s.inflight, k)
		}
	}
}
