package server

import (
	"context"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/network/cni"
)

// A RemovePodSandbox that arrives while a CreateContainer in the pod is halfway waits for it
// and removes the new container too: no record, mount or lease is left.
func TestCreateContainerRacesRemovePodSandbox(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)

	entered, release := make(chan struct{}), make(chan struct{})
	gen := e.svc.genSpec
	e.svc.genSpec = func(id string, cfg *runtimeapi.ContainerConfig, sb spec.SandboxInfo, img spec.ImageConfig, opts spec.Options) (*specs.Spec, error) {
		close(entered) // the rootfs is mounted and the image leased by now
		<-release
		return gen(id, cfg, sb, img, opts)
	}
	createErr := make(chan error, 1)
	go func() {
		_, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("app"), SandboxConfig: pod})
		createErr <- err
	}()
	<-entered
	removeErr := make(chan error, 1)
	go func() {
		_, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		removeErr <- err
	}()
	select {
	case err := <-removeErr:
		close(release)
		<-createErr
		t.Fatalf("RemovePodSandbox returned (%v) while a create in the pod was halfway", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(release)
	if err := <-createErr; err != nil {
		t.Fatalf("CreateContainer that started first: %v", err)
	}
	if err := <-removeErr; err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	e.assertNothingLeft(t)
}

// blockingTeardown holds a sandbox removal inside its network teardown.
type blockingTeardown struct {
	Network
	entered, release chan struct{}
}

func (b blockingTeardown) Teardown(ctx context.Context, req cni.TeardownRequest) error {
	close(b.entered)
	<-b.release
	return b.Network.Teardown(ctx, req)
}

// A CreateContainer that arrives while the pod is being removed fails without leaving
// anything behind, whether it waited for the removal (NotFound) or saw it (FailedPrecondition).
func TestCreateContainerDuringRemovePodSandbox(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	bt := blockingTeardown{Network: e.svc.network, entered: make(chan struct{}), release: make(chan struct{})}
	e.svc.network = bt
	removeErr := make(chan error, 1)
	go func() {
		_, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID})
		removeErr <- err
	}()
	<-bt.entered
	createErr := make(chan error, 1)
	go func() {
		_, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("app"), SandboxConfig: pod})
		createErr <- err
	}()
	time.Sleep(100 * time.Millisecond) // let the create reach the sandbox lock
	close(bt.release)
	if err := <-removeErr; err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
	if err := <-createErr; !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("CreateContainer during the removal = %v, want NotFound or FailedPrecondition", err)
	}
	e.assertNothingLeft(t)
}
