package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

func TestRecoverRefreshesContainers(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	exited := e.createContainer(t, podID, pod, containerConfig("exited"))
	running := e.createContainer(t, podID, pod, containerConfig("running"))
	created := e.createContainer(t, podID, pod, containerConfig("created"))
	for _, id := range []string{exited, running} {
		if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
	}
	e.svc.Close()

	// While the agent is down: one container exits, a create that crashed left an
	// unrecorded container in the shim and an orphaned directory in the ledger.
	sh := e.shims.get(e.svc.shimDir(podID))
	sh.exit(exited, 7)
	if _, err := sh.Create(ctx, ShimCreateRequest{ID: "ghost", Bundle: mustBundle(t)}); err != nil {
		t.Fatal(err)
	}
	orphan := filepath.Join(e.cfg.State, "containers", "ghost")
	if err := os.MkdirAll(orphan, 0o755); err != nil {
		t.Fatal(err)
	}
	addOrphan(t, e, store.Resource{Kind: store.KindDir, Path: orphan, Owner: "ghost"})

	svc := e.newService(t)
	if !svc.Ready() {
		t.Fatal("not ready after Recover")
	}
	status := func(id string) *runtimeapi.ContainerStatus {
		t.Helper()
		resp, err := svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	if st := status(exited); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 || st.Reason != store.ReasonError {
		t.Fatalf("container that exited while down: %v", st)
	}
	if st := status(running); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("running container after recover: %v", st)
	}
	if st := status(created); st.State != runtimeapi.ContainerState_CONTAINER_CREATED {
		t.Fatalf("created container after recover: %v", st)
	}
	if _, err := sh.State(ctx, "ghost"); err == nil {
		t.Fatal("unrecorded container still in the shim")
	}
	if _, err := os.Stat(orphan); !os.IsNotExist(err) {
		t.Fatalf("orphaned directory not released: %v", err)
	}
	// Exit tracking resumed for the running container.
	sh.exit(running, 0)
	c, _ := svc.store.Containers.Get(running)
	waitFor(t, func() bool { return c.Status().State == store.ContainerExited })
	if st := status(running); st.Reason != store.ReasonCompleted {
		t.Fatalf("exit after recover: %v", st)
	}
	// The names were restored: a duplicate is refused.
	if _, err := svc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")}); err == nil {
		t.Fatal("duplicate pod name accepted after recover")
	}
	// And everything can still be removed.
	if _, err := svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	e.assertNothingLeft(t)
}

func TestRecoverUnreachableShim(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, containerConfig("app"))
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	e.svc.Close()
	e.shims.connErr = errInjected

	svc := e.newService(t)
	cst, err := svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if cst.Status.State != runtimeapi.ContainerState_CONTAINER_EXITED || !strings.Contains(cst.Status.Message, "shim unreachable") {
		t.Fatalf("container with unreachable shim: %v", cst.Status)
	}
	sst, err := svc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	if sst.Status.State != runtimeapi.PodSandboxState_SANDBOX_NOTREADY {
		t.Fatalf("sandbox with unreachable shim: %v", sst.Status.State)
	}
}

func TestNotReadyBeforeRecover(t *testing.T) {
	e := newTestEnv(t)
	e.svc.Close()
	svc, err := New(Options{
		Config: e.cfg, Images: struct{ ImageStore }{}, ContainerImages: e.images, Shims: e.shims,
		Namespaces: e.ns, Cgroups: e.cg, Mounter: e.mounts, GenerateSpec: e.generate, Network: e.net,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	if svc.Ready() {
		t.Fatal("ready before Recover")
	}
	resp, err := svc.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if c := resp.Status.Conditions[0]; c.Type != runtimeapi.RuntimeReady || c.Status {
		t.Fatalf("RuntimeReady before recover = %v", c)
	}
}

func TestStoreLockedBySecondAgent(t *testing.T) {
	e := newTestEnv(t)
	_, err := New(Options{
		Config: e.cfg, Images: struct{ ImageStore }{}, ContainerImages: e.images, Shims: e.shims,
		Namespaces: e.ns, Cgroups: e.cg, Mounter: e.mounts, GenerateSpec: e.generate, Network: e.net,
	})
	if err == nil {
		t.Fatal("second service opened a locked store")
	}
}

func mustBundle(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte("{}"), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// addOrphan records a resource in the closed service's store file.
func addOrphan(t *testing.T, e *testEnv, r store.Resource) {
	t.Helper()
	db, err := store.Open(filepath.Join(e.cfg.Root, "cri", "meta.db"), storeLockTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.AddResource(r); err != nil {
		t.Fatal(err)
	}
}

// TestOrphansReleasedWhileServing: a RunPodSandbox whose rollback could not release its
// network attachment (DEL failing as the plugin is) leaves a ledger entry without an owner;
// the agent releases it while serving once DEL works, without waiting for a restart, and
// leaves alone the objects of an owner whose request is still in flight (it holds a name).
func TestOrphansReleasedWhileServing(t *testing.T) {
	e := newTestEnv(t)
	e.net.mu.Lock()
	e.net.setupErr = errors.New("plugin refuses ADD")
	e.net.teardownErr = errors.New("plugin refuses DEL")
	e.net.mu.Unlock()
	_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("orphan")})
	if err == nil {
		t.Fatal("RunPodSandbox succeeded, want the network's error")
	}
	rs, _ := e.svc.store.Resources()
	if !slices.ContainsFunc(rs, func(r store.Resource) bool { return r.Kind == kindCNI }) {
		t.Fatalf("ledger %+v: want the attachment whose release failed", rs)
	}
	inflight := store.Resource{Kind: store.KindDir, Path: filepath.Join(t.TempDir(), "inflight"), Owner: "inflight-id"}
	if err := e.svc.store.AddResource(inflight); err != nil {
		t.Fatal(err)
	}
	if err := e.svc.names.Reserve("inflight-name", inflight.Owner); err != nil {
		t.Fatal(err)
	}
	e.net.mu.Lock()
	e.net.teardownErr = nil
	e.net.mu.Unlock()

	// The serving agent's reconcile loop, not a restart, must release it.
	deadline := time.Now().Add(orphanReconcileInterval + 5*time.Second)
	for {
		rs, _ = e.svc.store.Resources()
		if len(rs) == 1 && rs[0] == inflight {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ledger %+v, want only the in-flight owner's %+v", rs, inflight)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := e.net.attached(); n != 0 {
		t.Errorf("%d attachments left", n)
	}
	// Once the in-flight request is done (it released its name), the next pass is its.
	e.svc.names.ReleaseByID(inflight.Owner)
	if err := e.svc.reconcileResources(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rs, _ = e.svc.store.Resources(); len(rs) != 0 {
		t.Errorf("ledger %+v, want empty", rs)
	}
}

// TestRecoverClearsStaleStarting: the agent died during StartContainer (the record says
// Starting) and the pod's shim is gone after the restart. The container is exited, and it
// and its pod can be removed: no request survives a restart to clear the flag.
func TestRecoverClearsStaleStarting(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, containerConfig("app"))
	c, err := e.svc.store.Containers.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Update(func(st *store.ContainerStatus) error { st.Starting = true; return nil }); err != nil {
		t.Fatal(err)
	}
	e.svc.Close()
	e.shims.mu.Lock()
	e.shims.connErr = errInjected
	e.shims.mu.Unlock()

	svc := e.newService(t)
	e.shims.mu.Lock()
	e.shims.connErr = nil
	e.shims.mu.Unlock()
	if _, err := svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("remove container after restart: %v", err)
	}
	if _, err := svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("stop pod: %v", err)
	}
	if _, err := svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("remove pod: %v", err)
	}
}
