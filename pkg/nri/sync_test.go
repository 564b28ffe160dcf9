package nri

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// fakeDomain is a runtime's pods and containers, changed the way pkg/cri changes them: the
// event that announces an object goes out before the object is stored.
type fakeDomain struct {
	mu   sync.Mutex
	pods []*api.PodSandbox
	ctrs []*api.Container
}

func (d *fakeDomain) Snapshot(context.Context) ([]*api.PodSandbox, []*api.Container, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.pods), slices.Clone(d.ctrs), nil
}

func (d *fakeDomain) UpdateContainer(context.Context, string, *specs.LinuxResources) error {
	return nil
}

func (d *fakeDomain) EvictContainer(context.Context, string, string) error { return nil }

// runPod is RunPodSandbox as pkg/cri runs it: the event, then the store.
func (d *fakeDomain) runPod(ctx context.Context, r *Runtime, id string) (*api.PodSandbox, error) {
	defer r.BlockSync()()
	pod := &api.PodSandbox{Id: id, Name: id, Namespace: "test", Uid: id}
	if err := r.RunPodSandbox(ctx, pod); err != nil {
		return nil, err
	}
	d.mu.Lock()
	d.pods = append(d.pods, pod)
	d.mu.Unlock()
	return pod, nil
}

// createContainer is CreateContainer as pkg/cri runs it: the adjustment, the store, then
// the post-create event.
func (d *fakeDomain) createContainer(ctx context.Context, r *Runtime, pod *api.PodSandbox, id string) error {
	defer r.BlockSync()()
	ctr := &api.Container{Id: id, PodSandboxId: pod.GetId(), Name: id, State: api.ContainerState_CONTAINER_CREATED}
	if err := r.CreateContainer(ctx, pod, ctr, &specs.Spec{}); err != nil {
		return err
	}
	d.mu.Lock()
	d.ctrs = append(d.ctrs, ctr)
	d.mu.Unlock()
	return r.PostCreateContainer(ctx, pod, ctr)
}

// slowSyncer is a plugin that holds its first Synchronize open for hold and records every
// pod and container it learns about, from the snapshot or from events.
type slowSyncer struct {
	hold    time.Duration
	reached chan struct{}
	once    sync.Once

	mu       sync.Mutex
	known    map[string]string // id -> how the plugin learned about it
	ctrStall time.Duration     // CreateContainer takes this long
}

func newSlowSyncer(hold time.Duration) *slowSyncer {
	return &slowSyncer{hold: hold, reached: make(chan struct{}), known: map[string]string{}}
}

func (p *slowSyncer) learn(id, how string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.known[id]; !ok {
		p.known[id] = how
	}
}

func (p *slowSyncer) knows(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, ok := p.known[id]
	return ok
}

func (p *slowSyncer) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, pod := range pods {
		p.learn(pod.GetId(), "sync")
	}
	for _, c := range ctrs {
		p.learn(c.GetId(), "sync")
	}
	p.once.Do(func() { close(p.reached) })
	select {
	case <-time.After(p.hold):
	case <-ctx.Done():
	}
	return nil, nil
}

func (p *slowSyncer) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.learn(pod.GetId(), "event")
	return nil
}

func (p *slowSyncer) CreateContainer(ctx context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.learn(c.GetId(), "event")
	p.mu.Lock()
	stall := p.ctrStall
	p.mu.Unlock()
	select {
	case <-time.After(stall):
	case <-ctx.Done():
	}
	return nil, nil, nil
}

// TestSlowSyncingPluginMissesNothing: a plugin that connects while pods and containers are
// being created, and whose Synchronize outlasts the request timeout, learns about every one
// of them, in its snapshot or as an event, and stays connected.
func TestSlowSyncingPluginMissesNothing(t *testing.T) {
	const requestTimeout = 300 * time.Millisecond
	dom := &fakeDomain{}
	sock := filepath.Join(t.TempDir(), "nri.sock")
	r, err := New(Options{
		Name: "berth-test", Version: "0", SocketPath: sock, PluginPath: t.TempDir(),
		RegistrationTimeout: 5 * time.Second, RequestTimeout: requestTimeout, Domain: dom,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	ctx := context.Background()

	var (
		idsMu sync.Mutex
		ids   []string
	)
	record := func(id string) {
		idsMu.Lock()
		ids = append(ids, id)
		idsMu.Unlock()
	}
	pod, err := dom.runPod(ctx, r, "pod-before")
	if err != nil {
		t.Fatal(err)
	}
	record(pod.GetId())

	// Creators keep pods and containers coming before, during and after the sync.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range 3 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
				id := fmt.Sprintf("ctr-%d-%d", w, i)
				if err := dom.createContainer(ctx, r, pod, id); err != nil {
					errs <- fmt.Errorf("create %s: %w", id, err)
					return
				}
				record(id)
				if i%4 == 0 {
					p, err := dom.runPod(ctx, r, fmt.Sprintf("pod-%d-%d", w, i))
					if err != nil {
						errs <- fmt.Errorf("run pod: %w", err)
						return
					}
					record(p.GetId())
				}
			}
		})
	}
	time.Sleep(150 * time.Millisecond)

	plugin := newSlowSyncer(3 * requestTimeout)
	s, err := stub.New(plugin, stub.WithPluginName("slow"), stub.WithPluginIdx("10"), stub.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); s.Stop() })
	if err := s.Start(sctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-plugin.reached:
	case <-time.After(10 * time.Second):
		t.Fatal("plugin never synchronized")
	}
	// Creations started while the plugin is inside Synchronize.
	for i := range 3 {
		wg.Go(func() {
			id := fmt.Sprintf("ctr-during-%d", i)
			if err := dom.createContainer(ctx, r, pod, id); err != nil {
				errs <- fmt.Errorf("create %s: %w", id, err)
				return
			}
			record(id)
		})
	}
	time.Sleep(plugin.hold + 300*time.Millisecond)
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// And after: the plugin is still connected and hears new containers.
	if err := dom.createContainer(ctx, r, pod, "ctr-after"); err != nil {
		t.Fatal(err)
	}
	record("ctr-after")

	var lost []string
	deadline := time.Now().Add(5 * time.Second)
	for {
		lost = lost[:0]
		for _, id := range ids {
			if !plugin.knows(id) {
				lost = append(lost, id)
			}
		}
		if len(lost) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(lost) > 0 {
		t.Fatalf("plugin never learned about %d of %d objects: %v", len(lost), len(ids), lost)
	}
	t.Logf("plugin learned about %d objects", len(ids))

	// The longer sync deadline was for Synchronize only: a plugin call stuck past the
	// request timeout still fails at it.
	plugin.mu.Lock()
	plugin.ctrStall = 10 * requestTimeout
	plugin.mu.Unlock()
	start := time.Now()
	_ = dom.createContainer(ctx, r, pod, "ctr-stalled")
	if took := time.Since(start); took > 5*requestTimeout {
		t.Fatalf("a stalled CreateContainer took %s, request timeout is %s", took, requestTimeout)
	}
}
