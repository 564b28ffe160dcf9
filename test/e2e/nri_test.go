package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// injector is an NRI plugin that adds an env var and an annotation to every container and
// records the events it sees.
type injector struct {
	mu     sync.Mutex
	events []string // "<event> <container name or pod name>"
}

func (p *injector) record(ev, name string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.events = append(p.events, ev+" "+name)
}

func (p *injector) seen() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.events)
}

func (p *injector) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("RunPodSandbox", pod.GetName())
	return nil
}

func (p *injector) StopPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.record("StopPodSandbox", pod.GetName())
	return nil
}

func (p *injector) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.record("CreateContainer", c.GetName())
	adj := &api.ContainerAdjustment{}
	adj.AddEnv("NRI_GREETING", "hello-from-nri")
	adj.AddAnnotation("berth.test/nri", "injected")
	return adj, nil, nil
}

func (p *injector) StartContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("StartContainer", c.GetName())
	return nil
}

func (p *injector) StopContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) ([]*api.ContainerUpdate, error) {
	p.record("StopContainer", c.GetName())
	return nil, nil
}

func (p *injector) RemoveContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) error {
	p.record("RemoveContainer", c.GetName())
	return nil
}

// nriAgent starts an agent with NRI on a private socket and a private pod network.
func nriAgent(t *testing.T) (*agent, string) {
	t.Helper()
	dir, err := os.MkdirTemp("/run", "berth-nri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "nri.sock")
	confDir := filepath.Join(dir, "cni-conf")
	if err := os.MkdirAll(confDir, 0o755); err != nil {
		t.Fatal(err)
	}
	n := int(agentSeq.Add(1)+int32(os.Getpid()*3)) % 250
	cfg := fmt.Sprintf("[network]\ncni_conf_dir = %q\ndefault_subnet = \"10.226.%d.0/24\"\ndefault_bridge = \"bte2enri%d\"\n"+
		"[nri]\nenable = true\nsocket_path = %q\nplugin_path = %q\n", confDir, n, n, sock, filepath.Join(dir, "plugins"))
	a := newAgent(t, agentOptions{config: cfg, bridge: fmt.Sprintf("bte2enri%d", n)})
	return a, sock
}

// startPlugin connects an NRI plugin to the agent's socket until the test ends.
func startPlugin(t *testing.T, plugin any, name, sock string) {
	t.Helper()
	s, err := stub.New(plugin, stub.WithPluginName(name), stub.WithPluginIdx("10"), stub.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); s.Stop() })
	if err := s.Start(ctx); err != nil {
		t.Fatalf("start plugin %s: %v", name, err)
	}
}

func TestNRIPluginAdjustsContainers(t *testing.T) {
	a, sock := nriAgent(t)

	// A pod that exists before the plugin connects must reach it through Synchronize.
	plugin := &injector{}
	startPlugin(t, plugin, "berth-e2e", sock)

	p := runPod(t, a, podConfig(t, "nri"))
	c := ctrConfig("greeter", env.images.busybox, withShell("echo $NRI_GREETING"))
	id := createContainer(t, a, p, c)

	b, err := os.ReadFile(filepath.Join(a.state, "containers", id, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	if got := sp.Annotations["berth.test/nri"]; got != "injected" {
		t.Errorf("annotation in config.json = %q, want injected", got)
	}

	startContainer(t, a, id)
	if st := waitExited(t, a, id, 30*time.Second); st.ExitCode != 0 {
		t.Fatalf("exit code %d", st.ExitCode)
	}
	if got := logText(readLog(t, logPath(p, c)), "stdout"); got != "hello-from-nri\n" {
		t.Errorf("stdout = %q, want the injected env var", got)
	}
	if _, err := a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}

	want := []string{"RunPodSandbox nri", "CreateContainer greeter", "StartContainer greeter", "StopContainer greeter", "RemoveContainer greeter"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := plugin.seen()
		if slices.Equal(got, want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("plugin events = %q, want %q", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNRIHookErrorFailsCreate: a plugin's CreateContainer error fails the CRI call, and a
// retry without the failure succeeds (nothing of the first attempt is left holding the name).
func TestNRIHookErrorFailsCreate(t *testing.T) {
	a, sock := nriAgent(t)
	plugin := &failer{}
	startPlugin(t, plugin, "berth-e2e-fail", sock)
	p := runPod(t, a, podConfig(t, "nri-fail"))
	c := ctrConfig("refused", env.images.busybox, withShell("true"))
	if imageStatus(t, a, c.Image.Image) == nil {
		pull(t, a, c.Image.Image)
	}
	c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: p.cfg.Linux.SecurityContext.NamespaceOptions}
	plugin.fail.Store(true)
	if _, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: c, SandboxConfig: p.cfg}); err == nil {
		t.Fatal("create succeeded although the plugin failed it")
	}
	list, err := a.rt.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Containers) != 0 {
		t.Fatalf("containers after a failed create: %v", list.Containers)
	}
	plugin.fail.Store(false)
	createContainer(t, a, p, c)
}

type failer struct{ fail atomic.Bool }

func (f *failer) CreateContainer(context.Context, *api.PodSandbox, *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	if f.fail.Load() {
		return nil, nil, fmt.Errorf("induced failure")
	}
	return nil, nil, nil
}

// slowSyncer is an NRI plugin whose first Synchronize stays open for hold; it records every
// pod and container id it learns about, from its snapshot or from an event.
type slowSyncer struct {
	hold    time.Duration
	reached chan struct{}
	once    sync.Once
	mu      sync.Mutex
	known   map[string]bool
}

func (p *slowSyncer) learn(id string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.known[id] = true
}

func (p *slowSyncer) knows(id string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.known[id]
}

func (p *slowSyncer) Synchronize(ctx context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	for _, pod := range pods {
		p.learn(pod.GetId())
	}
	for _, c := range ctrs {
		p.learn(c.GetId())
	}
	p.once.Do(func() { close(p.reached) })
	select {
	case <-time.After(p.hold):
	case <-ctx.Done():
	}
	return nil, nil
}

func (p *slowSyncer) RunPodSandbox(_ context.Context, pod *api.PodSandbox) error {
	p.learn(pod.GetId())
	return nil
}

func (p *slowSyncer) CreateContainer(_ context.Context, _ *api.PodSandbox, c *api.Container) (*api.ContainerAdjustment, []*api.ContainerUpdate, error) {
	p.learn(c.GetId())
	return nil, nil, nil
}

// TestNRISlowSyncMissesNothing: with the default timeouts, a plugin whose Synchronize takes
// longer than the request timeout (2 s) stays connected and learns about every pod and
// container, including those run and created while it synchronizes: each is in its snapshot
// or reaches it as an event, never neither.
func TestNRISlowSyncMissesNothing(t *testing.T) {
	a, sock := nriAgent(t)
	before := runPod(t, a, podConfig(t, "nri-sync-before"))
	c := ctrConfig("before", env.images.busybox, withShell("sleep 60"))
	ids := []string{before.id, createContainer(t, a, before, c)}

	plugin := &slowSyncer{hold: 3 * time.Second, reached: make(chan struct{}), known: map[string]bool{}}
	startPlugin(t, plugin, "berth-e2e-slow-sync", sock)
	select {
	case <-plugin.reached:
	case <-time.After(30 * time.Second):
		t.Fatal("plugin never synchronized")
	}

	// While the plugin is inside Synchronize: a pod run and containers created.
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		pods []string
	)
	add := func(list *[]string, id string) {
		mu.Lock()
		defer mu.Unlock()
		*list = append(*list, id)
	}
	during := podConfig(t, "nri-sync-during")
	wg.Go(func() {
		resp, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: during})
		if err != nil {
			t.Errorf("run pod during sync: %v", err)
			return
		}
		add(&pods, resp.PodSandboxId)
		add(&ids, resp.PodSandboxId)
	})
	for i := range 3 {
		cfg := ctrConfig(fmt.Sprintf("during-%d", i), env.images.busybox, withShell("sleep 60"))
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: before.cfg.Linux.SecurityContext.NamespaceOptions}
		wg.Go(func() {
			resp, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: before.id, Config: cfg, SandboxConfig: before.cfg})
			if err != nil {
				t.Errorf("create container during sync: %v", err)
				return
			}
			add(&ids, resp.ContainerId)
		})
	}
	wg.Wait()
	for _, id := range pods {
		t.Cleanup(func() {
			ctx := ctxT(t)
			if _, err := a.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Errorf("cleanup: stop pod %s: %v", id, err)
			}
			if _, err := a.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Errorf("cleanup: remove pod %s: %v", id, err)
			}
		})
	}
	// And after: the plugin is still connected.
	ids = append(ids, createContainer(t, a, before, ctrConfig("after", env.images.busybox, withShell("sleep 60"))))

	var lost []string
	deadline := time.Now().Add(10 * time.Second)
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
		time.Sleep(100 * time.Millisecond)
	}
	if len(lost) > 0 {
		t.Fatalf("plugin never learned about %d of %d pods and containers: %v", len(lost), len(ids), lost)
	}
}
