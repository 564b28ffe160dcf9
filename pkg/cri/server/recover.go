package server

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// orphanReconcileInterval is how often objects a rollback failed to release (a CNI DEL that
// failed while the plugin did) are tried again while the agent runs, not only at startup.
const orphanReconcileInterval = 10 * time.Second

// recoverShimTimeout bounds each call to a shim during recovery, so that one wedged shim
// delays startup by seconds, not forever.
const recoverShimTimeout = 10 * time.Second

// Recover rebuilds the service's state after a start: it reloads the records, reconnects
// each ready pod's shim, refreshes its containers' states (a container that exited while
// the agent was down reports its real exit code), restarts exit tracking, releases kernel
// objects no record owns, lets NRI plugins in (they synchronize with this state), and only
// then marks the service Ready.
func (s *Service) Recover(ctx context.Context) error {
	if err := s.store.Load(); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	for _, sb := range s.store.Sandboxes.List() {
		if err := s.names.Reserve(sb.Metadata().Name, sb.ID()); err != nil {
			s.log.Warn("recover: sandbox name conflict", "sandbox", sb.ID(), "err", err)
		}
	}
	for _, c := range s.store.Containers.List() {
		if err := s.names.Reserve(c.Metadata().Name, c.ID()); err != nil {
			s.log.Warn("recover: container name conflict", "container", c.ID(), "err", err)
		}
		s.clearStarting(c)
	}
	for _, sb := range s.store.Sandboxes.List() {
		s.recoverSandbox(ctx, sb)
	}
	s.recoverOrphanContainers()
	// A checkpoint cut short by an agent restart leaves CRIU images in scratch; nothing
	// refers to them (the archive is written elsewhere, complete or not at all). A pod
	// checkpoint may also have left its containers frozen.
	s.thawInterrupted()
	if err := os.RemoveAll(s.checkpointScratch()); err != nil {
		s.log.Warn("recover: remove checkpoint scratch", "err", err)
	}
	if err := s.reconcileResources(ctx); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	s.gcNetwork(ctx)
	s.events.seed()
	// Plugins synchronize with the recovered state, not an empty store (nri.go newNRI).
	if err := s.nri.Start(); err != nil {
		return fmt.Errorf("recover: %w", err)
	}
	s.ready.Store(true)
	s.exits.Add(1)
	go s.reconcileLoop()
	return nil
}

// reconcileLoop retries the release of orphaned objects, and rolls back kept creates nobody
// came back for (keep.go), until Close.
func (s *Service) reconcileLoop() {
	defer s.exits.Done()
	t := time.NewTicker(orphanReconcileInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
			s.reapKept(ctx, time.Now().Add(-keepWindow))
			if err := s.reconcileResources(ctx); err != nil {
				s.log.Warn("reconcile orphaned objects", "err", err)
			}
			cancel()
		}
	}
}

func (s *Service) recoverSandbox(ctx context.Context, sb *store.Sandbox) {
	md := sb.Metadata()
	log := s.log.With("sandbox", md.ID)
	containers := s.store.ContainersOf(md.ID)
	if sb.Status().State != store.SandboxReady {
		// Stop shut the shim down; finish that if the agent died halfway through it.
		if err := s.release(ctx, store.Resource{Kind: store.KindShim, Path: md.ShimDir, Owner: md.ID}); err != nil {
			log.Warn("recover: release shim of stopped sandbox", "err", err)
		}
		s.markLost(containers, "sandbox was stopped")
		return
	}
	// An UpdatePodSandboxResources the agent died in: its caller saw no answer and retries.
	s.restorePodResources(sb)
	cctx, cancel := context.WithTimeout(ctx, recoverShimTimeout)
	defer cancel()
	cl, err := s.shims.Connect(cctx, md.ShimDir)
	var states []ShimState
	if err == nil {
		states, err = cl.List(cctx)
		if err != nil {
			cl.Close()
		}
	}
	if err != nil {
		log.Warn("recover: shim unreachable; marking the pod not ready", "err", err)
		msg := "shim unreachable after agent restart: " + err.Error()
		s.logSandboxUpdate(sb, sb.Update(func(st *store.SandboxStatus) error {
			st.State, st.Message = store.SandboxNotReady, msg
			return nil
		}))
		s.markLost(containers, msg)
		return
	}
	s.setClient(md.ID, cl)
	byID := make(map[string]ShimState, len(states))
	for _, st := range states {
		byID[st.ID] = st
	}
	for _, c := range containers {
		st, ok := byID[c.ID()]
		delete(byID, c.ID())
		s.recoverContainer(c, cl, st, ok)
	}
	// Containers the shim has but no record names were created by a request that died
	// before it could record them: nobody will ever use them.
	for id := range byID {
		log.Info("recover: deleting unrecorded container from shim", "container", id)
		dctx, dcancel := context.WithTimeout(ctx, recoverShimTimeout)
		if err := killAndDelete(dctx, cl, id); err != nil {
			log.Warn("recover: delete unrecorded container", "container", id, "err", err)
		}
		dcancel()
	}
}

// clearStarting drops a Starting flag left by a StartContainer the agent died in: no request
// survives a restart, and the flag would refuse Start and Remove of the container forever
// when recovery records it exited (its shim gone) rather than created or running.
func (s *Service) clearStarting(c *store.Container) {
	if !c.Status().Starting {
		return
	}
	s.logUpdate(c, c.Update(func(cs *store.ContainerStatus) error {
		cs.Starting = false
		return nil
	}))
}

// recoverContainer brings a record in line with what the shim reports.
func (s *Service) recoverContainer(c *store.Container, cl ShimClient, st ShimState, inShim bool) {
	if c.Status().State == store.ContainerExited {
		return
	}
	if !inShim {
		s.logUpdate(c, s.recordExit(c, ShimState{ExitCode: 255, Message: "container missing from its shim after agent restart"}))
		return
	}
	switch st.Status {
	case shimStopped:
		s.logUpdate(c, s.recordExit(c, st))
	case shimRunning:
		err := c.Update(func(cs *store.ContainerStatus) error {
			cs.State, cs.Pid, cs.Starting = store.ContainerRunning, st.Pid, false
			if cs.StartedAt.IsZero() {
				cs.StartedAt = st.StartedAt
			}
			return nil
		})
		s.logUpdate(c, err)
		s.watchExit(c, cl)
	case shimCreated:
		s.logUpdate(c, c.Update(func(cs *store.ContainerStatus) error {
			cs.State, cs.Starting = store.ContainerCreated, false
			return nil
		}))
	default:
		s.logUpdate(c, c.Update(func(cs *store.ContainerStatus) error {
			cs.State, cs.Starting, cs.Message = store.ContainerUnknown, false, "shim reports state "+st.Status
			return nil
		}))
	}
}

// markLost records containers that can no longer run as exited with an unknown code.
func (s *Service) markLost(cs []*store.Container, msg string) {
	for _, c := range cs {
		s.logUpdate(c, s.recordExit(c, ShimState{ExitCode: 255, Message: msg}))
	}
}

// recoverOrphanContainers handles containers whose sandbox record is gone (a crash inside
// RemovePodSandbox): their shim is gone with it, so they are exited.
func (s *Service) recoverOrphanContainers() {
	for _, c := range s.store.Containers.List() {
		if _, err := s.store.Sandboxes.Get(c.Metadata().SandboxID); err != nil {
			s.markLost([]*store.Container{c}, "sandbox record is gone")
		}
	}
}

// reconcileResources releases every recorded object whose owner has no record: leftovers
// of a create that crashed before recording its object, or a remove that crashed after
// deleting its record.
//
// It also runs while serving (reconcileLoop): an owner that holds a name is being created or
// removed right now, and its own request releases what it must. The live set is read before
// the ledger, so an owner recorded in between is skipped by its name, and one removed in
// between has its objects released again, which release tolerates.
func (s *Service) reconcileResources(ctx context.Context) error {
	live := map[string]bool{}
	for _, sb := range s.store.Sandboxes.List() {
		live[sb.ID()] = true
	}
	for _, c := range s.store.Containers.List() {
		live[c.ID()] = true
	}
	rs, err := s.store.Resources()
	if err != nil {
		return err
	}
	for _, r := range rs {
		if live[r.Owner] || s.names.HoldsID(r.Owner) {
			continue
		}
		if err := s.release(ctx, r); err != nil {
			s.log.Warn("recover: release orphaned object", "owner", r.Owner, "kind", r.Kind, "path", r.Path, "err", err)
		}
	}
	return nil
}

func (s *Service) logSandboxUpdate(sb *store.Sandbox, err error) {
	if err != nil {
		s.log.Warn("recover: update sandbox", "sandbox", sb.ID(), "err", err)
	}
}
