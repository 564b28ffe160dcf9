// Package registrar reserves CRI object names (sandbox and container names built from their
// metadata) so that two concurrent creates with the same name cannot both succeed.
package registrar

import (
	"fmt"
	"sync"

	"github.com/containerd/errdefs"
)

// ConflictError reports a name already held by another object. It matches
// errdefs.ErrAlreadyExists, and the kubelet reads the holder id from its text.
type ConflictError struct {
	Name   string
	Holder string
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("name %q is reserved for %q: %v", e.Name, e.Holder, errdefs.ErrAlreadyExists)
}

// Unwrap classifies the conflict for errdefs.IsAlreadyExists.
func (e *ConflictError) Unwrap() error { return errdefs.ErrAlreadyExists }

// Registrar maps names to the ids holding them, one name per id. The lock is only held for
// map operations, never across a slow call.
type Registrar struct {
	mu    sync.Mutex
	names map[string]string // name -> id
	ids   map[string]string // id -> name
}

// New returns an empty Registrar.
func New() *Registrar {
	return &Registrar{names: map[string]string{}, ids: map[string]string{}}
}

// Reserve binds name to id. Reserving the same pair twice is a no-op, so recovery may
// re-reserve what a half-finished request already holds.
func (r *Registrar) Reserve(name, id string) error {
	if name == "" || id == "" {
		return fmt.Errorf("reserve name %q for %q: empty name or id: %w", name, id, errdefs.ErrInvalidArgument)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if holder, ok := r.names[name]; ok {
		if holder == id {
			return nil
		}
		return &ConflictError{Name: name, Holder: holder}
	}
	if old, ok := r.ids[id]; ok {
		return fmt.Errorf("reserve name %q for %q: id already holds name %q: %w", name, id, old, errdefs.ErrAlreadyExists)
	}
	r.names[name] = id
	r.ids[id] = name
	return nil
}

// Release frees name. Releasing a free name is a no-op.
func (r *Registrar) Release(name string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if id, ok := r.names[name]; ok {
		delete(r.ids, id)
		delete(r.names, name)
	}
}

// ReleaseByID frees whatever name id holds.
func (r *Registrar) ReleaseByID(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if name, ok := r.ids[id]; ok {
		delete(r.names, name)
		delete(r.ids, id)
	}
}

// Holder returns the id holding name.
func (r *Registrar) Holder(name string) (string, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	id, ok := r.names[name]
	return id, ok
}

// HoldsID reports whether id holds a name: a request creating or removing it is in flight,
// or its record exists.
func (r *Registrar) HoldsID(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	_, ok := r.ids[id]
	return ok
}
