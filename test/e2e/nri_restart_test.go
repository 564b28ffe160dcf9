package e2e

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// exitWatcher is an NRI plugin that records the stopped containers it learns about, from
// its Synchronize snapshot or from StopContainer events, with their exit codes.
type exitWatcher struct {
	mu      sync.Mutex
	stopped map[string]int32 // container id -> exit code
	changed chan struct{}
}

func newExitWatcher() *exitWatcher {
	return &exitWatcher{stopped: map[string]int32{}, changed: make(chan struct{}, 1)}
}

func (p *exitWatcher) saw(c *api.Container) {
	if c.GetState() != api.ContainerState_CONTAINER_STOPPED {
		return
	}
	p.mu.Lock()
	p.stopped[c.GetId()] = c.GetExitCode()
	p.mu.Unlock()
	select {
	case p.changed <- struct{}{}:
	default:
	}
}

func (p *exitWatcher) exitCode(id string) (int32, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	code, ok := p.stopped[id]
	return code, ok
}

func (p *exitWatcher) Synchronize(_ context.Context, _ []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, c := range ctrs {
		p.saw(c)
	}
	return nil, nil
}

func (p *exitWatcher) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	c.State = api.ContainerState_CONTAINER_STOPPED
	p.saw(c)
	return nil, nil
}

// TestNRIPluginLearnsExitWhileAgentDown: a container that exits while the agent is stopped
// reaches a plugin connecting to the restarted agent, with its exit code, as a stopped
// container in its snapshot or as a StopContainer event.
func TestNRIPluginLearnsExitWhileAgentDown(t *testing.T) {
	a, sock := nriAgent(t)
	p := runPod(t, a, podConfig(t, "nri-restart"))
	id := createContainer(t, a, p, ctrConfig("waiter", env.images.busybox,
		withShell("while [ ! -e /go ]; do sleep 0.1; done; exit 5")))
	startContainer(t, a, id)

	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	// The container's rootfs is mounted below the agent's state dir: let it exit.
	if err := os.WriteFile(filepath.Join(a.state, "containers", id, "rootfs", "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	plugin := newExitWatcher()
	startPlugin(t, plugin, "berth-e2e-exits", sock)
	deadline := time.After(30 * time.Second)
	for {
		if code, ok := plugin.exitCode(id); ok {
			if code != 5 {
				t.Fatalf("plugin learned exit code %d, want 5", code)
			}
			return
		}
		select {
		case <-plugin.changed:
		case <-deadline:
			t.Fatal("plugin never learned that the container exited")
		}
	}
}

// slowCreator is an NRI plugin whose CreateContainer hook waits until released.
type slowCreator struct {
	entered chan struct{}
	release chan struct{}
}

func (p *slowCreator) CreateContainer(ctx context.Context, _ *api.PodSandbox, _ *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.entered <- struct{}{}
	select {
	case <-p.release:
	case <-ctx.Done():
	}
	return nil, nil, nil
}

// TestCreateContainerKeptForRetry: the caller of a CreateContainer gives up while it is
// under way (as the kubelet does at its deadline); the container is not rolled back, and the
// retry with the same request gets it.
func TestCreateContainerKeptForRetry(t *testing.T) {
	a, sock := nriAgent(t)
	plugin := &slowCreator{entered: make(chan struct{}, 4), release: make(chan struct{})}
	startPlugin(t, plugin, "berth-e2e-slow", sock)
	p := runPod(t, a, podConfig(t, "kept"))
	if imageStatus(t, a, env.images.busybox) == nil {
		pull(t, a, env.images.busybox)
	}
	cfg := ctrConfig("slow", env.images.busybox, withShell("sleep 1000"))
	cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: p.cfg.Linux.SecurityContext.NamespaceOptions}
	req := &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg}

	ctx, cancel := context.WithCancel(ctxT(t))
	errc := make(chan error, 1)
	go func() {
		_, err := a.rt.CreateContainer(ctx, req)
		errc <- err
	}()
	<-plugin.entered
	cancel()
	if err := <-errc; status.Code(err) != codes.Canceled && !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateContainer whose caller left = %v, want Canceled", err)
	}
	retry := make(chan *runtimeapi.CreateContainerResponse, 1)
	go func() {
		resp, err := a.rt.CreateContainer(ctxT(t), req)
		if err != nil {
			t.Errorf("retry: %v", err)
		}
		retry <- resp
	}()
	close(plugin.release)
	resp := <-retry
	if resp == nil {
		t.FailNow()
	}
	list, err := a.rt.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id}})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 1 || list.Containers[0].Id != resp.ContainerId {
		t.Fatalf("containers after the retry = %v, want only %s", list.Containers, resp.ContainerId)
	}
	startContainer(t, a, resp.ContainerId)
}
