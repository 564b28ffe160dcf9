package images

import (
	"context"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Audit is what `berth doctor` checks of the image store: the owners holding leases (each
// should be a container the agent still records) and the snapshots no image, lease or pull
// references (which GC removes).
type Audit struct {
	LeaseOwners           []string
	UnreferencedSnapshots []string // chain ids
}

// Audit reads the store without changing it.
func (s *Service) Audit(ctx context.Context) (Audit, error) {
	s.mu.Lock()
	live := map[string]bool{}
	for k := range s.inflight {
		live[k] = true
	}
	s.mu.Unlock()
	var a Audit
	err := s.db.View(func(tx *bolt.Tx) error {
		err := tx.Bucket(bucketImages).ForEach(func(_, v []byte) error {
			rec, err := decode[imageRecord](v)
			for _, k := range rec.Chain {
				live[k] = true
			}
			return err
		})
		if err != nil {
			return err
		}
		err = tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
			rec, err := decode[leaseRecord](v)
			for _, c := range rec.Chain {
				live[c] = true
			}
			a.LeaseOwners = append(a.LeaseOwners, string(k))
			return err
		})
		if err != nil {
			return err
		}
		return tx.Bucket(bucketSnapshots).ForEach(func(k, _ []byte) error {
			if !live[string(k)] {
				a.UnreferencedSnapshots = append(a.UnreferencedSnapshots, string(k))
			}
			return nil
		})
	})
	if err != nil {
		return a, fmt.Errorf("audit image store: %w", err)
	}
	return a, nil
}
