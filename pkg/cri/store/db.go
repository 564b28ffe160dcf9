package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/containerd/errdefs"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketSandboxes  = []byte("sandboxes")
	bucketContainers = []byte("containers")
	bucketResources  = []byte("resources")
	bucketSettings   = []byte("settings")
)

// DB is the open metadata database.
type DB struct {
	bolt *bolt.DB
}

// Open opens (creating) the database at path. The file lock is waited for at most timeout,
// so a second agent on the same root fails fast instead of hanging.
func Open(path string, timeout time.Duration) (*DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("open cri store %s: %w", path, err)
	}
	b, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: timeout})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("open cri store %s: locked by another process (is another agent running?): %w", path, errdefs.ErrUnavailable)
		}
		return nil, fmt.Errorf("open cri store %s: %w", path, err)
	}
	err = b.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketSandboxes, bucketContainers, bucketResources, bucketSettings} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("open cri store %s: create buckets: %w", path, err)
	}
	return &DB{bolt: b}, nil
}

// Close closes the database.
func (d *DB) Close() error { return d.bolt.Close() }

func (d *DB) put(bucket []byte, key string, value []byte) error {
	return d.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Put([]byte(key), value)
	})
}

func (d *DB) delete(bucket []byte, key string) error {
	return d.bolt.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).Delete([]byte(key))
	})
}

func (d *DB) forEach(bucket []byte, fn func(k, v []byte) error) error {
	return d.bolt.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(fn)
	})
}
