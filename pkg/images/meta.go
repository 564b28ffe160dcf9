package images

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Buckets of images/meta.db. Keys are strings; values are JSON records.
var (
	bucketImages    = []byte("images")    // image id -> imageRecord
	bucketNames     = []byte("names")     // normalised name:tag or name@digest -> image id
	bucketSnapshots = []byte("snapshots") // chain id -> snapshotRecord
	bucketLeases    = []byte("leases")    // owner -> leaseRecord
)

type imageRecord struct {
	ID      string    `json:"id"`
	Names   []string  `json:"names"`   // sorted; both tags and repo digests
	Chain   []string  `json:"chain"`   // chain ids, bottom layer first
	Blobs   []string  `json:"blobs"`   // index, manifest and config digests kept for this image
	Size    uint64    `json:"size"`    // sum of compressed layer sizes
	Created time.Time `json:"created"` // first time the node had it
}

type snapshotRecord struct {
	N      uint64 `json:"n"` // directory snapshots/<n>
	Parent string `json:"parent,omitempty"`
	DiffID string `json:"diffID"`
	Bytes  int64  `json:"bytes"`
	Inodes int64  `json:"inodes"`
}

type leaseRecord struct {
	ImageID string   `json:"imageID"`
	Chain   []string `json:"chain"`
}

func openDB(path string) (*bolt.DB, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketImages, bucketNames, bucketSnapshots, bucketLeases} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("init %s: %w", path, err)
	}
	return db, nil
}

func decode[T any](v []byte) (T, error) {
	var rec T
	if err := json.Unmarshal(v, &rec); err != nil {
		return rec, fmt.Errorf("decode record: %w", err)
	}
	return rec, nil
}

func put(b *bolt.Bucket, key string, rec any) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	return b.Put([]byte(key), v)
}

func getImage(tx *bolt.Tx, id string) (imageRecord, bool, error) {
	v := tx.Bucket(bucketImages).Get([]byte(id))
	if v == nil {
		return imageRecord{}, false, nil
	}
	rec, err := decode[imageRecord](v)
	return rec, err == nil, err
}

// commitImage stores rec and points names at it. A name that pointed at another image is
// taken from it: the old image keeps its other names (normally its repo digest).
func commitImage(tx *bolt.Tx, rec imageRecord, names []string) (imageRecord, error) {
	imgs, nb := tx.Bucket(bucketImages), tx.Bucket(bucketNames)
	if old, ok, err := getImage(tx, rec.ID); err != nil {
		return rec, err
	} else if ok {
		rec.Names = old.Names
		rec.Created = old.Created
		rec.Blobs = union(old.Blobs, rec.Blobs)
	}
	for _, n := range names {
		prev := string(nb.Get([]byte(n)))
		if prev != "" && prev != rec.ID {
			if err := dropName(tx, prev, n); err != nil {
				return rec, err
			}
		}
		if err := nb.Put([]byte(n), []byte(rec.ID)); err != nil {
			return rec, err
		}
	}
	rec.Names = union(rec.Names, names)
	return rec, put(imgs, rec.ID, rec)
}

func dropName(tx *bolt.Tx, id, name string) error {
	rec, ok, err := getImage(tx, id)
	if err != nil || !ok {
		return err
	}
	rec.Names = slices.DeleteFunc(rec.Names, func(n string) bool { return n == name })
	return put(tx.Bucket(bucketImages), id, rec)
}

// deleteImage removes the record and every name pointing at it.
func deleteImage(tx *bolt.Tx, rec imageRecord) error {
	nb := tx.Bucket(bucketNames)
	for _, n := range rec.Names {
		if string(nb.Get([]byte(n))) == rec.ID {
			if err := nb.Delete([]byte(n)); err != nil {
				return err
			}
		}
	}
	return tx.Bucket(bucketImages).Delete([]byte(rec.ID))
}

func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

func (s *Service) snapshotPath(n uint64) string {
	return filepath.Join(s.snapDir, strconv.FormatUint(n, 10))
}
