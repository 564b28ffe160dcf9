package store

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// Record is one object: immutable metadata and a status guarded by the record's lock.
type Record[M, S any] struct {
	id   string
	meta M

	mu      sync.Mutex
	status  S
	deleted bool
	save    func(id string, m M, s S) error
}

// ID is the object's id.
func (r *Record[M, S]) ID() string { return r.id }

// Metadata returns the immutable metadata. Callers must not modify what it points to.
func (r *Record[M, S]) Metadata() M { return r.meta }

// Status returns a deep copy of the current status.
func (r *Record[M, S]) Status() S {
	r.mu.Lock()
	defer r.mu.Unlock()
	s, err := clone(r.status)
	if err != nil {
		// Statuses are plain data that always round-trip; failing here is a programming error.
		panic(fmt.Sprintf("clone status of %s: %v", r.id, err))
	}
	return s
}

// Update runs fn on a copy of the status under the record's lock. When fn succeeds the copy
// is persisted and then published; when fn or the write fails, nothing changes. fn must be
// quick: it holds the record's lock.
func (r *Record[M, S]) Update(fn func(*S) error) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.deleted {
		return fmt.Errorf("update %s: record deleted: %w", r.id, errdefs.ErrNotFound)
	}
	next, err := clone(r.status)
	if err != nil {
		return fmt.Errorf("update %s: copy status: %w", r.id, err)
	}
	if err := fn(&next); err != nil {
		return err
	}
	if err := r.save(r.id, r.meta, next); err != nil {
		return fmt.Errorf("update %s: persist: %w", r.id, err)
	}
	r.status = next
	return nil
}

func clone[S any](s S) (S, error) {
	var out S
	b, err := json.Marshal(s)
	if err != nil {
		return out, err
	}
	err = json.Unmarshal(b, &out)
	return out, err
}

// envelope is a record's on-disk form.
type envelope[M, S any] struct {
	Metadata M `json:"metadata"`
	Status   S `json:"status"`
}

// Table holds the records of one kind, in memory and in one bbolt bucket. The table lock
// guards only the map; it is never held while a record's lock is.
type Table[M, S any] struct {
	db     *DB
	bucket []byte
	kind   string

	mu      sync.RWMutex
	records map[string]*Record[M, S]
}

func newTable[M, S any](db *DB, bucket []byte, kind string) *Table[M, S] {
	return &Table[M, S]{db: db, bucket: bucket, kind: kind, records: map[string]*Record[M, S]{}}
}

func (t *Table[M, S]) save(id string, m M, s S) error {
	b, err := json.Marshal(envelope[M, S]{Metadata: m, Status: s})
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", t.kind, id, err)
	}
	return t.db.put(t.bucket, id, b)
}

// load reads every record of the bucket into memory, replacing what the table held.
func (t *Table[M, S]) load() error {
	records := map[string]*Record[M, S]{}
	err := t.db.forEach(t.bucket, func(k, v []byte) error {
		var e envelope[M, S]
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode %s %s: %w", t.kind, k, err)
		}
		id := string(k)
		records[id] = &Record[M, S]{id: id, meta: e.Metadata, status: e.Status, save: t.save}
		return nil
	})
	if err != nil {
		return fmt.Errorf("load %ss: %w", t.kind, err)
	}
	t.mu.Lock()
	t.records = records
	t.mu.Unlock()
	return nil
}

// Add persists a new record and makes it visible.
func (t *Table[M, S]) Add(id string, m M, s S) (*Record[M, S], error) {
	if id == "" {
		return nil, fmt.Errorf("add %s: empty id: %w", t.kind, errdefs.ErrInvalidArgument)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.records[id]; ok {
		return nil, fmt.Errorf("add %s %s: %w", t.kind, id, errdefs.ErrAlreadyExists)
	}
	if err := t.save(id, m, s); err != nil {
		return nil, fmt.Errorf("add %s %s: %w", t.kind, id, err)
	}
	r := &Record[M, S]{id: id, meta: m, status: s, save: t.save}
	t.records[id] = r
	return r, nil
}

// Get returns the record with exactly this id.
func (t *Table[M, S]) Get(id string) (*Record[M, S], error) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	r, ok := t.records[id]
	if !ok {
		return nil, fmt.Errorf("%s %q: %w", t.kind, id, errdefs.ErrNotFound)
	}
	return r, nil
}

// Resolve returns the record whose id is idOrPrefix or starts with it. An ambiguous prefix
// is an invalid argument; an empty one never matches.
func (t *Table[M, S]) Resolve(idOrPrefix string) (*Record[M, S], error) {
	if idOrPrefix == "" {
		return nil, fmt.Errorf("%s id is empty: %w", t.kind, errdefs.ErrNotFound)
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if r, ok := t.records[idOrPrefix]; ok {
		return r, nil
	}
	var found *Record[M, S]
	for id, r := range t.records {
		if !strings.HasPrefix(id, idOrPrefix) {
			continue
		}
		if found != nil {
			return nil, fmt.Errorf("%s id prefix %q matches more than one %s: %w", t.kind, idOrPrefix, t.kind, errdefs.ErrInvalidArgument)
		}
		found = r
	}
	if found == nil {
		return nil, fmt.Errorf("%s %q: %w", t.kind, idOrPrefix, errdefs.ErrNotFound)
	}
	return found, nil
}

// List returns every record, ordered by id for stable output.
func (t *Table[M, S]) List() []*Record[M, S] {
	t.mu.RLock()
	out := make([]*Record[M, S], 0, len(t.records))
	for _, r := range t.records {
		out = append(out, r)
	}
	t.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

// Delete removes the record from disk and memory. A missing record is not an error. Updates
// racing with the delete fail with NotFound instead of resurrecting the record on disk.
func (t *Table[M, S]) Delete(id string) error {
	t.mu.Lock()
	r, ok := t.records[id]
	t.mu.Unlock()
	if ok {
		r.mu.Lock()
		defer r.mu.Unlock()
	}
	if err := t.db.delete(t.bucket, id); err != nil {
		return fmt.Errorf("delete %s %s: %w", t.kind, id, err)
	}
	if ok {
		r.deleted = true
	}
	t.mu.Lock()
	delete(t.records, id)
	t.mu.Unlock()
	return nil
}
