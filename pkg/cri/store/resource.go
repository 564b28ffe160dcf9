package store

import (
	"encoding/json"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Kind names a kind of kernel or filesystem object owned by a sandbox or container.
type Kind string

// Resource kinds, released in the order listed by ReleaseOrder.
const (
	KindMount  Kind = "mount"  // a mountpoint to unmount (shm tmpfs, container rootfs)
	KindNetNS  Kind = "netns"  // a pinned namespace bind mount
	KindCgroup Kind = "cgroup" // a cgroupfs path
	KindDir    Kind = "dir"    // a directory tree to remove
	KindLease  Kind = "lease"  // an image lease; Path is the image id
	KindShim   Kind = "shim"   // a shim; Path is its directory
)

// Resource is an object recorded before it is created, so that a crash between creating it
// and recording its user leaves something startup can find and release.
type Resource struct {
	Kind  Kind   `json:"kind"`
	Path  string `json:"path"`
	Owner string `json:"owner"` // sandbox or container id
}

// key includes the owner: one image may be leased by many containers.
func (r Resource) key() string { return string(r.Kind) + "\x00" + r.Owner + "\x00" + r.Path }

// AddResource records r. Recording it again is a no-op.
func (d *DB) AddResource(r Resource) error {
	if r.Kind == "" || r.Path == "" || r.Owner == "" {
		return fmt.Errorf("record resource %+v: kind, path and owner are required", r)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("record %s %s: %w", r.Kind, r.Path, err)
	}
	if err := d.put(bucketResources, r.key(), b); err != nil {
		return fmt.Errorf("record %s %s: %w", r.Kind, r.Path, err)
	}
	return nil
}

// RemoveResource forgets r once it has been released. A missing record is not an error.
func (d *DB) RemoveResource(r Resource) error {
	if err := d.delete(bucketResources, r.key()); err != nil {
		return fmt.Errorf("forget %s %s: %w", r.Kind, r.Path, err)
	}
	return nil
}

// RemoveResources forgets every r in rs, released already, in one transaction (one sync
// instead of one per object). Missing records are not an error.
func (d *DB) RemoveResources(rs []Resource) error {
	if len(rs) == 0 {
		return nil
	}
	err := d.bolt.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketResources)
		for _, r := range rs {
			if err := b.Delete([]byte(r.key())); err != nil {
				return fmt.Errorf("forget %s %s: %w", r.Kind, r.Path, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("forget %d resources: %w", len(rs), err)
	}
	return nil
}

// Resources lists every recorded object, grouped by owner and, within an owner, in the order
// they must be released (mounts before the directories holding them).
func (d *DB) Resources() ([]Resource, error) {
	var out []Resource
	err := d.forEach(bucketResources, func(k, v []byte) error {
		var r Resource
		if err := json.Unmarshal(v, &r); err != nil {
			return fmt.Errorf("decode resource %s: %w", k, err)
		}
		out = append(out, r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list resources: %w", err)
	}
	SortForRelease(out)
	return out, nil
}

// ResourcesOf lists the objects owned by owner, in release order.
func (d *DB) ResourcesOf(owner string) ([]Resource, error) {
	all, err := d.Resources()
	if err != nil {
		return nil, err
	}
	var out []Resource
	for _, r := range all {
		if r.Owner == owner {
			out = append(out, r)
		}
	}
	return out, nil
}

// releaseRank orders kinds for teardown: the shim (and its processes) first, then mounts and
// pins, then cgroups (empty by then), then directories (whose mounts are gone), then leases.
var releaseRank = map[Kind]int{KindShim: 0, KindMount: 1, KindNetNS: 2, KindCgroup: 3, KindDir: 4, KindLease: 5}

// SortForRelease orders resources by owner, then release rank, then deepest path first.
func SortForRelease(rs []Resource) {
	sort.SliceStable(rs, func(i, j int) bool {
		a, b := rs[i], rs[j]
		if a.Owner != b.Owner {
			return a.Owner < b.Owner
		}
		if releaseRank[a.Kind] != releaseRank[b.Kind] {
			return releaseRank[a.Kind] < releaseRank[b.Kind]
		}
		return a.Path > b.Path
	})
}
