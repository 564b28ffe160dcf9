package server

import (
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// Container events for the kubelet's evented PLEG.
//
// The RPC files call s.events.container(id) or s.events.sandbox(id) after they commit a state
// change. The broker is level-triggered: it compares the record's committed state with the
// last event it sent for that object and emits every step in between, in lifecycle order
// (CREATED, STARTED, STOPPED, DELETED). So a hook that runs late (an exit watcher racing
// with RemoveContainer) or twice never sends an event out of order or a duplicate, and a
// step no hook reported (a container that exited before its STARTED hook ran) is still sent.
// Events are lossless per subscriber: when a subscriber's buffer is full its stream ends
// with an error rather than skipping events, and the kubelet relists.

// eventBuffer bounds the events queued for one subscriber.
const eventBuffer = 4096

type eventPhase int

const (
	phaseNone eventPhase = iota
	phaseCreated
	phaseStarted
	phaseStopped
	phaseDeleted
)

var phaseEvent = map[eventPhase]runtimeapi.ContainerEventType{
	phaseCreated: runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT,
	phaseStarted: runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
	phaseStopped: runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT,
	phaseDeleted: runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
}

type ctrEntry struct {
	phase eventPhase
	rec   *store.Container
}

type sbEntry struct {
	phase eventPhase
	rec   *store.Sandbox
}

type eventSub struct {
	ch   chan *runtimeapi.ContainerEventResponse
	dead chan struct{} // closed when the subscriber fell behind
}

// eventBroker tracks the last event sent per object and fans events out to subscribers.
type eventBroker struct {
	st  *store.Store
	now func() time.Time

	mu     sync.Mutex
	seeded bool
	ctrs   map[string]*ctrEntry
	sbs    map[string]*sbEntry
	subs   map[*eventSub]struct{}
}

func newEventBroker(st *store.Store) *eventBroker {
	return &eventBroker{st: st, now: time.Now, ctrs: map[string]*ctrEntry{}, sbs: map[string]*sbEntry{}, subs: map[*eventSub]struct{}{}}
}

// seed records the state recovery left as already reported: nobody can have subscribed
// before recovery, and the kubelet relists when it (re)subscribes. Hooks before seed are ignored.
func (b *eventBroker) seed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, sb := range b.st.Sandboxes.List() {
		b.sbs[sb.ID()] = &sbEntry{phase: sandboxPhase(sb.Status()), rec: sb}
	}
	for _, c := range b.st.Containers.List() {
		b.ctrs[c.ID()] = &ctrEntry{phase: containerPhase(c.Status(), phaseNone), rec: c}
	}
	b.seeded = true
}

func containerPhase(st store.ContainerStatus, cur eventPhase) eventPhase {
	switch st.State {
	case store.ContainerCreated:
		return phaseCreated
	case store.ContainerRunning:
		return phaseStarted
	case store.ContainerExited:
		return phaseStopped
	}
	return max(cur, phaseCreated) // unknown: no news
}

func sandboxPhase(st store.SandboxStatus) eventPhase {
	if st.State == store.SandboxReady {
		return phaseStarted
	}
	return phaseStopped
}

// container reports that the container's committed state may have changed.
func (b *eventBroker) container(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.seeded {
		return
	}
	rec, err := b.st.Containers.Get(id)
	e := b.ctrs[id]
	if e == nil {
		if err != nil {
			return // already reported deleted, or never known
		}
		e = &ctrEntry{rec: rec}
		b.ctrs[id] = e
	}
	st := e.rec.Status()
	target := phaseDeleted
	if err == nil {
		target = containerPhase(st, e.phase)
	}
	for p := e.phase + 1; p <= target; p++ {
		if p == phaseStarted && st.StartedAt.IsZero() {
			continue // exited without ever starting (start failed)
		}
		b.publish(b.containerEvent(e.rec, st, err != nil, p))
	}
	if target > e.phase {
		e.phase = target
	}
	if target == phaseDeleted {
		delete(b.ctrs, id)
	}
}

// sandbox reports that the sandbox's committed state may have changed. A pod sandbox's
// events carry its id as container_id, as the kubelet expects.
func (b *eventBroker) sandbox(id string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.seeded {
		return
	}
	rec, err := b.st.Sandboxes.Get(id)
	e := b.sbs[id]
	if e == nil {
		if err != nil {
			return
		}
		e = &sbEntry{rec: rec}
		b.sbs[id] = e
	}
	target := phaseDeleted
	if err == nil {
		target = sandboxPhase(e.rec.Status())
	}
	for p := e.phase + 1; p <= target; p++ {
		b.publish(b.event(id, phaseEvent[p], e.rec, nil))
	}
	if target > e.phase {
		e.phase = target
	}
	if target == phaseDeleted {
		delete(b.sbs, id)
	}
}

// containerEvent carries the pod's status and its containers' statuses; a container that is
// already gone from the store is included with its last status, except in its DELETED event.
func (b *eventBroker) containerEvent(c *store.Container, st store.ContainerStatus, gone bool, p eventPhase) *runtimeapi.ContainerEventResponse {
	md := c.Metadata()
	sb, _ := b.st.Sandboxes.Get(md.SandboxID)
	if sb == nil {
		if e := b.sbs[md.SandboxID]; e != nil {
			sb = e.rec
		}
	}
	var extra *runtimeapi.ContainerStatus
	if gone && p != phaseDeleted {
		extra = toCRIContainerStatus(md, st)
	}
	return b.event(md.ID, phaseEvent[p], sb, extra)
}

func (b *eventBroker) event(id string, typ runtimeapi.ContainerEventType, sb *store.Sandbox, extra *runtimeapi.ContainerStatus) *runtimeapi.ContainerEventResponse {
	ev := &runtimeapi.ContainerEventResponse{ContainerId: id, ContainerEventType: typ, CreatedAt: b.now().UnixNano()}
	if sb == nil {
		return ev
	}
	ev.PodSandboxStatus = toCRISandboxStatus(sb.Metadata(), sb.Status())
	ev.ContainersStatuses = podContainerStatuses(b.st, sb.ID())
	if extra != nil {
		ev.ContainersStatuses = append(ev.ContainersStatuses, extra)
	}
	return ev
}

// publish queues ev for every subscriber; one whose buffer is full is cut off.
func (b *eventBroker) publish(ev *runtimeapi.ContainerEventResponse) {
	for sub := range b.subs {
		select {
		case sub.ch <- ev:
		default:
			close(sub.dead)
			delete(b.subs, sub)
		}
	}
}

func (b *eventBroker) subscribe(buffer int) *eventSub {
	sub := &eventSub{ch: make(chan *runtimeapi.ContainerEventResponse, buffer), dead: make(chan struct{})}
	b.mu.Lock()
	b.subs[sub] = struct{}{}
	b.mu.Unlock()
	return sub
}

func (b *eventBroker) unsubscribe(sub *eventSub) {
	b.mu.Lock()
	delete(b.subs, sub)
	b.mu.Unlock()
}

// GetContainerEvents streams container and sandbox lifecycle events until the client leaves
// or falls so far behind that events would be lost.
func (s *Service) GetContainerEvents(_ *runtimeapi.GetEventsRequest, stream grpc.ServerStreamingServer[runtimeapi.ContainerEventResponse]) error {
	sub := s.events.subscribe(eventBuffer)
	defer s.events.unsubscribe(sub)
	ctx := stream.Context()
	for {
		// Drain queued events first: a subscriber cut off still gets what was queued
		// before the cut, then the error.
		select {
		case ev := <-sub.ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
			continue
		default:
		}
		select {
		case ev := <-sub.ch:
			if err := stream.Send(ev); err != nil {
				return err
			}
		case <-sub.dead:
			if len(sub.ch) == 0 {
				return fmt.Errorf("container events: subscriber fell %d events behind, relist: %w", eventBuffer, errdefs.ErrResourceExhausted)
			}
		case <-ctx.Done():
			return nil
		case <-s.stop:
			return fmt.Errorf("container events: agent shutting down: %w", errdefs.ErrUnavailable)
		}
	}
}
