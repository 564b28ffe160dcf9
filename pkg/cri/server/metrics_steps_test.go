package server

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestStepDurations: every step of a pod's and a container's life is timed under its
// operation and step name, so an operator can see where a slow pod start goes.
func TestStepDurations(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("steps")
	podID := e.runPod(t, pod)
	e.createContainer(t, podID, pod, containerConfig("c"))
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}

	fams, err := e.svc.prom.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[[2]string]uint64{}
	for _, f := range fams {
		if f.GetName() != "berth_operation_step_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			var k [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "operation":
					k[0] = l.GetValue()
				case "step":
					k[1] = l.GetValue()
				}
			}
			seen[k] = m.GetHistogram().GetSampleCount()
		}
	}
	for _, want := range [][2]string{
		{"RunPodSandbox", "create namespaces"},
		{"RunPodSandbox", "set up network"},
		{"RunPodSandbox", "start shim"},
		{"RunPodSandbox", "start pod init"},
		{"CreateContainer", "mount rootfs"},
		{"CreateContainer", "create in shim"},
		{"StopPodSandbox", "stop containers"},
		{"StopPodSandbox", "stop shim"},
		{"StopPodSandbox", "tear down network"},
		{"RemovePodSandbox", "remove containers"},
		{"RemovePodSandbox", "release resources"},
	} {
		if seen[want] == 0 {
			t.Errorf("no duration recorded for %s / %s (recorded: %v)", want[0], want[1], seen)
		}
	}
	e.assertNothingLeft(t)
}
