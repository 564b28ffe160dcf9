package server

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestPodSandboxStatusContainers: verbose answers carry the pod's container statuses and the
// time they were taken (the evented PLEG reads them); plain answers stay small.
func TestPodSandboxStatusContainers(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	other := e.runPod(t, podConfig("other"))
	created := e.createContainer(t, podID, pod, containerConfig("created"))
	running := e.createContainer(t, podID, pod, containerConfig("running"))
	e.createContainer(t, other, podConfig("other"), containerConfig("elsewhere"))
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: running}); err != nil {
		t.Fatal(err)
	}

	plain, err := e.svc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	if len(plain.ContainersStatuses) != 0 || plain.Timestamp != 0 {
		t.Errorf("non-verbose status has %d container statuses, timestamp %d; want none", len(plain.ContainersStatuses), plain.Timestamp)
	}

	resp, err := e.svc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: podID, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Timestamp <= 0 {
		t.Errorf("verbose status timestamp = %d, want the time of the statuses", resp.Timestamp)
	}
	want := map[string]runtimeapi.ContainerState{
		created: runtimeapi.ContainerState_CONTAINER_CREATED,
		running: runtimeapi.ContainerState_CONTAINER_RUNNING,
	}
	if len(resp.ContainersStatuses) != len(want) {
		t.Fatalf("verbose status has %d container statuses, want %d (this pod's only)", len(resp.ContainersStatuses), len(want))
	}
	for _, cs := range resp.ContainersStatuses {
		state, ok := want[cs.Id]
		if !ok || cs.State != state {
			t.Errorf("container status %s in %s, want one of %v", cs.Id, cs.State, want)
		}
		if cs.Metadata.GetName() == "" || cs.CreatedAt == 0 {
			t.Errorf("container status %s lacks metadata or created time", cs.Id)
		}
	}
}
