package images

import (
	"context"
	"fmt"
	"os"

	bolt "go.etcd.io/bbolt"
)

// gcLoop runs collections off the request path: deletes are slow on this filesystem and
// must not stall Pull or Remove.
func (s *Service) gcLoop() {
	defer close(s.gcDone)
	for {
		select {
		case <-s.closing:
			return
		case <-s.gcKick:
			if err := s.GC(context.Background()); err != nil {
				s.log.Warn("image garbage collection failed", "err", err)
			}
		}
	}
}

func (s *Service) kickGC() {
	select {
	case s.gcKick <- struct{}{}:
	default:
	}
}

// GC removes snapshots and blobs that no image, lease or running pull references
// (mark and sweep: no reference counts to get wrong after a crash).
func (s *Service) GC(ctx context.Context) error {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	dirs, err := s.sweep()
	for _, d := range dirs {
		if rmErr := os.RemoveAll(d); rmErr != nil {
			s.log.Warn("remove snapshot", "dir", d, "err", rmErr)
		}
	}
	if len(dirs) > 0 {
		s.log.Info("garbage collected snapshots", "count", len(dirs))
	}
	return err
}

// sweep deletes unreferenced records and blobs under s.mu, so that no pull can start
// depending on them meanwhile, and returns the snapshot dirs to remove afterwards.
func (s *Service) sweep() ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	live := map[string]bool{}
	for k := range s.inflight {
		live[k] = true
	}
	var dirs []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketImages).ForEach(func(_, v []byte) error {
			rec, err := decode[imageRecord](v)
			for _, k := range append(rec.Chain, rec.Blobs...) {
				live[k] = true
			}
			return err
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketLeases).ForEach(func(_, v []byte) error {
			rec, err := decode[leaseRecord](v)
			for _, k := range rec.Chain {
				live[k] = true
			}
			return err
		})
		if err != nil {
			return err
		}
		b := tx.Bucket(bucketSnapshots)
		var dead [][]byte
		err = b.ForEach(func(k, v []byte) error {
			if live[string(k)] {
				return nil
			}
			rec, err := decode[snapshotRecord](v)
			if err != nil {
				return err
			}
			dead = append(dead, k)
			dirs = append(dirs, s.snapshotPath(rec.N))
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("gc: %w", err)
	}
	err = s.content.Walk(func(dgst string, _ int64) error {
		if live[dgst] {
			return nil
		}
		return s.content.Delete(dgst)
	})
	if err != nil {
		return dirs, fmt.Errorf("gc blobs: %w", err)
	}
	return dirs, nil
}
