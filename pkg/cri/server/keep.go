package server

import (
	"context"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/proto"
)

// What the kubelet retries. The kubelet gives RunPodSandbox 4 minutes and CreateContainer 2
// (its runtime-request-timeout, doubled for sandboxes; k8s.io/cri-client remote_runtime.go),
// then gives up and, on its next sync, asks again with the same metadata and so the same name.
// A create that is merely slow (a busy CNI plugin, a cold image) would be rolled back at the
// deadline and redone from scratch by the retry, which then times out the same way. So the
// work runs on a context of its own: when it succeeds after the caller left, the result is
// kept under its name, invisible (no record yet), and the retry with the same request gets
// its id back. A retry that arrives while the work is still under way waits for it. A kept
// result nobody collects within keepWindow is rolled back by the reconcile loop; one kept
// when the agent stops has no record, so startup reconciliation releases it.
//
//	begin --work fails or the caller is there--> (rolled back or stored) --end--> gone
//	begin --work done, caller gone--> parked --retry with the same request--> collected (stored)
//	                                     \--keepWindow passes, nobody came--> rolled back
//
// A different request under the same name is not a retry: it finds the name held and gets
// the registrar's conflict, as before. Modelled on CRI-O's internal/resourcestore.
const (
	// keepWindow is how long a parked result waits for its retry. The kubelet retries a
	// failed sandbox or container on its next pod sync, well within it.
	keepWindow = 4 * time.Minute
	// detachedTimeout bounds create work once it no longer follows the caller's context:
	// the kubelet's longest CRI deadline (RunPodSandbox's).
	detachedTimeout = 4 * time.Minute
)

// keptResults tracks creates under way and results parked for a retry, by object name.
type keptResults struct {
	mu     sync.Mutex
	byName map[string]*keptOp
}

// keptOp is one create: in flight until end, then parked or gone.
type keptOp struct {
	name string
	id   string
	req  proto.Message // what a retry must equal to be handed this result
	done chan struct{} // closed by end

	// Set by park, read under keptResults.mu.
	parked   bool
	parkedAt time.Time
	finish   func(context.Context) error // stores the result: the step the caller's leaving skipped
	undo     func(context.Context)       // rolls the whole create back
}

func newKeptResults() *keptResults { return &keptResults{byName: map[string]*keptOp{}} }

// detach gives create work a context the caller's cancellation does not end.
func detach(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), detachedTimeout)
}

// begin registers a create of name (already reserved for id) under way.
func (k *keptResults) begin(name, id string, req proto.Message) *keptOp {
	op := &keptOp{name: name, id: id, req: proto.Clone(req), done: make(chan struct{})}
	k.mu.Lock()
	k.byName[name] = op
	k.mu.Unlock()
	return op
}

// park keeps op's result for a retry: finish completes it, undo rolls it back.
func (k *keptResults) park(op *keptOp, finish func(context.Context) error, undo func(context.Context)) {
	k.mu.Lock()
	op.parked, op.parkedAt, op.finish, op.undo = true, time.Now(), finish, undo
	k.mu.Unlock()
}

// end marks op's create over (stored, rolled back or parked) and wakes retries waiting for it.
func (k *keptResults) end(op *keptOp) {
	k.mu.Lock()
	if !op.parked && k.byName[op.name] == op {
		delete(k.byName, op.name)
	}
	k.mu.Unlock()
	close(op.done)
}

// claim hands over the parked result of a create of name made with an equal request,
// waiting for one still under way. nil means none: the caller creates as usual (and a
// different request under the same name meets the name conflict there).
func (k *keptResults) claim(ctx context.Context, name string, req proto.Message) (*keptOp, error) {
	k.mu.Lock()
	op, ok := k.byName[name]
	k.mu.Unlock()
	if !ok || !proto.Equal(op.req, req) {
		return nil, nil
	}
	select {
	case <-op.done:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the earlier request's create of %s: %w", op.id, ctx.Err())
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if !op.parked || k.byName[name] != op {
		return nil, nil // stored (the name conflict says so), rolled back, or claimed by another retry
	}
	delete(k.byName, name)
	return op, nil
}

// expired removes and returns the results parked before cutoff.
func (k *keptResults) expired(cutoff time.Time) []*keptOp {
	k.mu.Lock()
	defer k.mu.Unlock()
	var out []*keptOp
	for name, op := range k.byName {
		if op.parked && op.parkedAt.Before(cutoff) {
			out = append(out, op)
			delete(k.byName, name)
		}
	}
	return out
}

// collectKept completes a parked create for the retry req and returns its id; "" when there
// is none. The completion runs on a fresh bounded context: like the rollback, it must not be
// cut short by this caller leaving too.
func (s *Service) collectKept(ctx context.Context, name string, req proto.Message) (string, error) {
	op, err := s.kept.claim(ctx, name, req)
	if err != nil || op == nil {
		return "", err
	}
	fctx, cancel := detach(ctx)
	defer cancel()
	if err := op.finish(fctx); err != nil {
		op.undo(fctx)
		return "", fmt.Errorf("complete kept %s: %w", op.id, err)
	}
	s.log.Info("handed a create finished after its caller left to the retry", "name", name, "id", op.id)
	return op.id, nil
}

// reapKept rolls back the results parked before cutoff that no retry collected.
func (s *Service) reapKept(ctx context.Context, cutoff time.Time) {
	for _, op := range s.kept.expired(cutoff) {
		s.log.Info("rolling back a create nobody came back for", "name", op.name, "id", op.id)
		op.undo(ctx)
	}
}
