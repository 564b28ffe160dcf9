package server

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runPodCallerLeaves runs a pod whose shim start is slow and whose caller gives up while it
// is under way; the create finishes after that and is kept. It returns the caller's error.
func runPodCallerLeaves(t *testing.T, e *testEnv, req *runtimeapi.RunPodSandboxRequest) error {
	t.Helper()
	step := newSlowStep()
	e.shims.slowStart = step
	defer func() { e.shims.slowStart = nil }()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := e.svc.RunPodSandbox(ctx, req)
		errc <- err
	}()
	<-step.entered
	cancel()
	close(step.release)
	return <-errc
}

func TestRunPodSandboxKeptForRetry(t *testing.T) {
	e := newTestEnv(t)
	req := &runtimeapi.RunPodSandboxRequest{Config: podConfig("slow")}
	err := runPodCallerLeaves(t, e, req)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("RunPodSandbox whose caller left = %v, want context.Canceled", err)
	}
	if n := len(e.svc.store.Sandboxes.List()); n != 0 {
		t.Fatalf("kept sandbox is visible before the retry: %d records", n)
	}
	if n := e.shims.running(); n != 1 {
		t.Fatalf("kept sandbox was rolled back: %d shims running", n)
	}
	kept, _ := e.svc.names.Holder(sandboxName(req.Config.Metadata))

	// A different request under the same name is not a retry.
	other := &runtimeapi.RunPodSandboxRequest{Config: podConfig("slow")}
	other.Config.Labels["changed"] = "yes"
	if _, err := e.svc.RunPodSandbox(context.Background(), other); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("different config under the kept name = %v, want already exists", err)
	}

	resp, err := e.svc.RunPodSandbox(context.Background(), req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if resp.PodSandboxId != kept {
		t.Fatalf("retry got %s, want the kept sandbox %s", resp.PodSandboxId, kept)
	}
	if _, err := e.svc.store.Sandboxes.Get(kept); err != nil {
		t.Fatalf("collected sandbox not recorded: %v", err)
	}
	if n := e.shims.running(); n != 1 {
		t.Fatalf("%d shims running after the retry, want the kept one", n)
	}
	// Collected once: a third identical request is a duplicate again.
	if _, err := e.svc.RunPodSandbox(context.Background(), req); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("request after the retry collected = %v, want already exists", err)
	}
}

func TestRunPodSandboxRetryWaitsForCreateUnderWay(t *testing.T) {
	e := newTestEnv(t)
	req := &runtimeapi.RunPodSandboxRequest{Config: podConfig("slow")}
	step := newSlowStep()
	e.shims.slowStart = step
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() {
		_, err := e.svc.RunPodSandbox(ctx, req)
		first <- err
	}()
	<-step.entered
	cancel()
	retry := make(chan *runtimeapi.RunPodSandboxResponse, 1)
	go func() {
		resp, err := e.svc.RunPodSandbox(context.Background(), req)
		if err != nil {
			t.Errorf("retry: %v", err)
		}
		retry <- resp
	}()
	close(step.release)
	if err := <-first; !errors.Is(err, context.Canceled) {
		t.Fatalf("first = %v, want context.Canceled", err)
	}
	resp := <-retry
	if resp == nil {
		t.FailNow()
	}
	if _, err := e.svc.store.Sandboxes.Get(resp.PodSandboxId); err != nil {
		t.Fatalf("retry's sandbox not recorded: %v", err)
	}
	if n := e.shims.running(); n != 1 {
		t.Fatalf("%d shims running, want one pod", n)
	}
}

func TestKeptSandboxNobodyCollectsIsRolledBack(t *testing.T) {
	e := newTestEnv(t)
	req := &runtimeapi.RunPodSandboxRequest{Config: podConfig("slow")}
	if err := runPodCallerLeaves(t, e, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("RunPodSandbox = %v, want context.Canceled", err)
	}
	e.svc.reapKept(context.Background(), time.Now()) // as if keepWindow had passed
	e.assertNothingLeft(t)
	if _, held := e.svc.names.Holder(sandboxName(req.Config.Metadata)); held {
		t.Fatal("name still reserved after the kept create was rolled back")
	}
	// The name is free for a new create.
	if _, err := e.svc.RunPodSandbox(context.Background(), req); err != nil {
		t.Fatalf("create after the rollback: %v", err)
	}
}

func TestKeptSandboxReleasedAtStartup(t *testing.T) {
	e := newTestEnv(t)
	req := &runtimeapi.RunPodSandboxRequest{Config: podConfig("slow")}
	if err := runPodCallerLeaves(t, e, req); !errors.Is(err, context.Canceled) {
		t.Fatalf("RunPodSandbox = %v, want context.Canceled", err)
	}
	e.svc.Close()
	e.svc = e.newService(t)
	e.assertNothingLeft(t)
}

func TestCallerLeavingDoesNotKeepAFailedCreate(t *testing.T) {
	e := newTestEnv(t)
	e.shims.podInit = errInjected
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := e.svc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")})
	if !errors.Is(err, errInjected) {
		t.Fatalf("RunPodSandbox = %v, want the injected failure", err)
	}
	e.assertNothingLeft(t)
	if n := len(e.svc.kept.byName); n != 0 {
		t.Fatalf("%d creates kept after a failure", n)
	}
}

func TestCreateContainerKeptForRetry(t *testing.T) {
	e := newTestEnv(t)
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	step := newSlowStep()
	e.shims.get(e.svc.shimDir(podID)).slowCreate = step
	req := &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("c"), SandboxConfig: pod}

	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := e.svc.CreateContainer(ctx, req)
		errc <- err
	}()
	<-step.entered
	cancel()
	close(step.release)
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateContainer whose caller left = %v, want context.Canceled", err)
	}
	if n := len(e.svc.store.Containers.List()); n != 0 {
		t.Fatalf("kept container is visible before the retry: %d records", n)
	}
	other := &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("c"), SandboxConfig: pod}
	other.Config.Command = []string{"true"}
	if _, err := e.svc.CreateContainer(context.Background(), other); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("different config under the kept name = %v, want already exists", err)
	}
	resp, err := e.svc.CreateContainer(context.Background(), req)
	if err != nil {
		t.Fatalf("retry: %v", err)
	}
	if _, err := e.svc.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("collected container: %v", err)
	}
	if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
		t.Fatalf("start collected container: %v", err)
	}
}

func TestKeptContainerNobodyCollectsIsRolledBack(t *testing.T) {
	e := newTestEnv(t)
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	sh := e.shims.get(e.svc.shimDir(podID))
	step := newSlowStep()
	sh.slowCreate = step
	req := &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("c"), SandboxConfig: pod}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := e.svc.CreateContainer(ctx, req)
		errc <- err
	}()
	<-step.entered
	cancel()
	close(step.release)
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("CreateContainer = %v, want context.Canceled", err)
	}
	e.svc.reapKept(context.Background(), time.Now())
	if states, _ := sh.List(context.Background()); len(states) != 0 {
		t.Fatalf("kept container still in the shim after its rollback: %v", states)
	}
	if n := e.images.leaseCount(); n != 0 {
		t.Fatalf("%d image leases left", n)
	}
	if _, err := e.svc.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft(t)
}
