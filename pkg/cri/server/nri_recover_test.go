package server

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/stub"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// syncRecorder is an NRI plugin that records its Synchronize snapshot.
type syncRecorder struct {
	once   sync.Once
	synced chan struct{}
	pods   []*api.PodSandbox
	ctrs   []*api.Container
}

func (p *syncRecorder) Synchronize(_ context.Context, pods []*api.PodSandbox, ctrs []*api.Container) ([]*api.ContainerUpdate, error) {
	p.once.Do(func() {
		p.pods, p.ctrs = pods, ctrs
		close(p.synced)
	})
	return nil, nil
}

// StopContainer is here because a plugin must subscribe to some event.
func (p *syncRecorder) StopContainer(context.Context, *api.PodSandbox, *api.Container) ([]*api.ContainerUpdate, error) {
	return nil, nil
}

// TestNRISyncAfterRestartSeesChangesWhileDown: plugins are let in only once recovery has
// brought the records in line with the shims, so a plugin (re)connecting to a restarted
// agent synchronizes with the pods it runs and with the real state of a container that
// exited while the agent was down, not with an empty or stale store.
func TestNRISyncAfterRestartSeesChangesWhileDown(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	exited := e.createContainer(t, podID, pod, containerConfig("exited"))
	running := e.createContainer(t, podID, pod, containerConfig("running"))
	for _, id := range []string{exited, running} {
		if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	e.svc.Close()
	e.shims.get(e.svc.shimDir(podID)).exit(exited, 7)

	// The restarted agent serves NRI (unix socket paths are short: not below t.TempDir()).
	dir, err := os.MkdirTemp("", "berth-nri-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "nri.sock")
	e.cfg.NRI.Enable, e.cfg.NRI.SocketPath, e.cfg.NRI.PluginPath = true, sock, filepath.Join(dir, "plugins")
	e.cfg.NRI.PluginConfigPath = filepath.Join(dir, "conf.d")
	svc, err := New(Options{
		Config: e.cfg, Images: struct{ ImageStore }{}, ContainerImages: e.images, Shims: e.shims, Namespaces: e.ns,
		Cgroups: e.cg, Mounter: e.mounts, GenerateSpec: e.generate, Network: e.net,
		ResolvConf: filepath.Join(filepath.Dir(e.cfg.Root), "resolv.conf"), ProcSys: e.procSys,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	if _, err := os.Stat(sock); !os.IsNotExist(err) {
		t.Fatalf("NRI socket is there before recovery (stat: %v): a plugin would sync with an unloaded store", err)
	}
	if err := svc.Recover(ctx); err != nil {
		t.Fatal(err)
	}

	plugin := &syncRecorder{synced: make(chan struct{})}
	s, err := stub.New(plugin, stub.WithPluginName("recorder"), stub.WithPluginIdx("10"), stub.WithSocketPath(sock))
	if err != nil {
		t.Fatal(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	t.Cleanup(func() { cancel(); s.Stop() })
	if err := s.Start(sctx); err != nil {
		t.Fatalf("plugin start: %v", err)
	}
	select {
	case <-plugin.synced:
	case <-time.After(30 * time.Second):
		t.Fatal("plugin never synchronized")
	}
	if len(plugin.pods) != 1 || plugin.pods[0].GetId() != podID {
		t.Fatalf("synchronized pods = %v, want %s", plugin.pods, podID)
	}
	states := map[string]*api.Container{}
	for _, c := range plugin.ctrs {
		states[c.GetId()] = c
	}
	if c := states[exited]; c.GetState() != api.ContainerState_CONTAINER_STOPPED || c.GetExitCode() != 7 {
		t.Fatalf("container that exited while the agent was down synchronized as %v", c)
	}
	if c := states[running]; c.GetState() != api.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("running container synchronized as %v", c)
	}
}
