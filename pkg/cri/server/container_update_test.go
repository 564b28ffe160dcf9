package server

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestUpdateContainerResourcesWithoutLinux: no Linux resources is InvalidArgument naming the
// container, and the container's recorded resources are left as they were.
func TestUpdateContainerResourcesWithoutLinux(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, containerConfig("app"))
	before, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, req := range []*runtimeapi.UpdateContainerResourcesRequest{
		{ContainerId: id},
		{ContainerId: id, Windows: &runtimeapi.WindowsContainerResources{CpuShares: 2}},
	} {
		_, err := e.svc.UpdateContainerResources(ctx, req)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), id) || !strings.Contains(err.Error(), "no linux resources") {
			t.Errorf("update %v: err = %v, want InvalidArgument naming %s and the missing linux resources", req, err, id)
		}
	}
	after, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(before.Status.Resources, after.Status.Resources) {
		t.Errorf("resources changed: %v -> %v", before.Status.Resources, after.Status.Resources)
	}
}
