package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// FsUsage adds up what the store holds from its own records (snapshot sizes measured at
// unpack time, blob sizes, the database) instead of walking millions of files every time
// the kubelet asks (every few seconds).
func (s *Service) FsUsage(ctx context.Context) (FsUsage, error) {
	u := FsUsage{Mountpoint: s.opts.Root}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketSnapshots).ForEach(func(_, v []byte) error {
			rec, err := decode[snapshotRecord](v)
			u.UsedBytes += uint64(rec.Bytes)
			u.InodesUsed += uint64(rec.Inodes) + 2 // snapshots/<n> and its fs dir
			return err
		})
	})
	if err != nil {
		return u, fmt.Errorf("fs usage: %w", err)
	}
	err = s.content.Walk(func(_ string, size int64) error {
		u.UsedBytes += uint64(size)
		u.InodesUsed++
		return nil
	})
	if err != nil {
		return u, fmt.Errorf("fs usage: %w", err)
	}
	if fi, err := os.Stat(filepath.Join(s.opts.Root, "meta.db")); err == nil {
		u.UsedBytes += uint64(fi.Size())
		u.InodesUsed++
	}
	return u, nil
}
