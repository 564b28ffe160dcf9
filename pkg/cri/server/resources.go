package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"time"

	"github.com/containerd/errdefs"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// shimConnectTimeout bounds reaching a shim that may be gone.
const shimConnectTimeout = 5 * time.Second

// newID returns a 64-hex id, like the kubelet expects of runtimes.
func newID() string {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(fmt.Sprintf("read random id: %v", err)) // crypto/rand does not fail on Linux
	}
	return hex.EncodeToString(b[:])
}

// acquire records r in the ledger, pushes its release onto cl, then creates it. The release
// is pushed before create runs so that a create failing halfway is still undone.
func (s *Service) acquire(cl *cleanups, r store.Resource, create func() error) error {
	if err := s.store.AddResource(r); err != nil {
		return err
	}
	cl.push(string(r.Kind)+" "+r.Path, func(ctx context.Context) error { return s.release(ctx, r) })
	return create()
}

// release frees one recorded object and forgets it. Every branch tolerates an object that is
// already gone, so release can run from rollback, remove and startup reconciliation alike.
func (s *Service) release(ctx context.Context, r store.Resource) error {
	if err := s.releaseObject(ctx, r); err != nil {
		return err
	}
	return s.store.RemoveResource(r)
}

// releaseHeld releases r if the ledger still holds it: a second stop of a pod (RemovePodSandbox
// stops it again) then costs a read, not a release and a write per object.
func (s *Service) releaseHeld(ctx context.Context, r store.Resource) error {
	held, err := s.holds(r)
	if err != nil || !held {
		return err
	}
	return s.release(ctx, r)
}

// releaseObject frees the kernel object or file r names; its record stays.
func (s *Service) releaseObject(ctx context.Context, r store.Resource) error {
	var err error
	switch r.Kind {
	case store.KindMount:
		err = s.mounter.Unmount(r.Path)
	case store.KindNetNS:
		err = s.namespaces.Unpin(r.Path)
	case store.KindCgroup:
		err = s.cgroups.Remove(r.Path)
	case store.KindDir:
		err = os.RemoveAll(r.Path)
	case store.KindLease:
		err = s.cimages.Unlease(ctx, r.Owner)
	case kindImageVolumeLease:
		err = s.cimages.Unlease(ctx, r.Path)
	case store.KindShim:
		err = s.shutdownShim(ctx, r.Owner, r.Path)
	case kindCNI:
		err = s.releaseNetwork(ctx, r.Owner, r.Path)
	default:
		err = fmt.Errorf("unknown resource kind %q", r.Kind)
	}
	if err != nil {
		return fmt.Errorf("release %s %s of %s: %w", r.Kind, r.Path, r.Owner, err)
	}
	return nil
}

// releaseAll frees every object owner still holds, in release order, and reports the first
// failure after trying them all. The records of what was freed go in one transaction at the
// end: a crash before it leaves records of objects already gone, which the next release
// (startup reconcile) finds gone and forgets.
func (s *Service) releaseAll(ctx context.Context, owner string) error {
	rs, err := s.store.ResourcesOf(owner)
	if err != nil {
		return err
	}
	var first error
	released := make([]store.Resource, 0, len(rs))
	for _, r := range rs {
		if err := s.releaseObject(ctx, r); err != nil {
			s.log.Warn("release failed", "owner", owner, "kind", r.Kind, "path", r.Path, "err", err)
			if first == nil {
				first = err
			}
			continue
		}
		released = append(released, r)
	}
	if err := s.store.RemoveResources(released); err != nil && first == nil {
		first = err
	}
	return first
}

// shutdownShim ends a sandbox's shim (deleting its containers) and removes its directory.
// A shim that cannot be reached is taken as gone.
func (s *Service) shutdownShim(ctx context.Context, sandboxID, dir string) error {
	c := s.takeClient(sandboxID)
	if c == nil {
		cctx, cancel := context.WithTimeout(ctx, shimConnectTimeout)
		var err error
		c, err = s.shims.Connect(cctx, dir)
		cancel()
		if err != nil {
			s.log.Info("shim unreachable at shutdown; taking it as gone", "sandbox", sandboxID, "err", err)
			c = nil
		}
	}
	if c != nil {
		err := c.Shutdown(ctx)
		c.Close()
		if err != nil && !errdefs.IsNotFound(err) && !errdefs.IsUnavailable(err) {
			return fmt.Errorf("shut down shim: %w", err)
		}
	}
	// A shim's scope (systemd driver) also holds whatever it forked but had not yet placed
	// (a pod init between its fork and its own scope) when it died: stopping the scope ends it.
	if cg := s.cgroups.ShimCgroup(sandboxID); cg != "" {
		if err := s.cgroups.Remove(cg); err != nil {
			return fmt.Errorf("remove shim scope: %w", err)
		}
	}
	return os.RemoveAll(dir)
}

func (s *Service) setClient(sandboxID string, c ShimClient) {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	s.clients[sandboxID] = c
}

func (s *Service) takeClient(sandboxID string) ShimClient {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	c := s.clients[sandboxID]
	delete(s.clients, sandboxID)
	return c
}

// client returns the shim client of a sandbox.
func (s *Service) client(sandboxID string) (ShimClient, error) {
	s.clientsMu.Lock()
	defer s.clientsMu.Unlock()
	c, ok := s.clients[sandboxID]
	if !ok {
		return nil, fmt.Errorf("shim of sandbox %s is not connected: %w", sandboxID, errdefs.ErrUnavailable)
	}
	return c, nil
}
