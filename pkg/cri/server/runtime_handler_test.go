package server

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// An unknown runtime handler is refused before anything is created: the kubelet must learn
// that its RuntimeClass names a handler this node lacks, not get a runc pod.
func TestRunPodSandboxUnknownHandler(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	_, err := e.svc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: "foo"})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), `"foo"`) {
		t.Fatalf("RunPodSandbox(handler foo) = %v, want NotFound naming the handler", err)
	}
	e.assertNothingLeft(t)
	if n := len(e.ns.entered); n != 0 {
		t.Fatalf("namespaces entered for a refused pod: %v", e.ns.entered)
	}
	if _, held := e.svc.names.Holder(sandboxName(pod.Metadata)); held {
		t.Fatal("pod name still reserved after a refused handler")
	}
	for _, h := range []string{"", "runc"} {
		resp, err := e.svc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: h})
		if err != nil {
			t.Fatalf("RunPodSandbox(handler %q) after a refusal: %v", h, err)
		}
		st, err := e.svc.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
		if err != nil || st.Status.RuntimeHandler != h {
			t.Fatalf("status of pod with handler %q = %v, %v", h, st, err)
		}
		if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	e.assertNothingLeft(t)
}

func TestStatusListsRuntimeHandlers(t *testing.T) {
	e := newTestEnv(t)
	e.svc.features = HandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	st, err := e.svc.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*runtimeapi.RuntimeHandlerFeatures{}
	for _, h := range st.RuntimeHandlers {
		got[h.Name] = h.Features
	}
	if len(got) != 2 || len(st.RuntimeHandlers) != 2 {
		t.Fatalf("handlers = %v, want the default \"\" and \"runc\"", st.RuntimeHandlers)
	}
	for _, name := range []string{"", "runc"} {
		f, ok := got[name]
		if !ok || !f.GetRecursiveReadOnlyMounts() || !f.GetUserNamespaces() {
			t.Errorf("handler %q features = %v (listed %v), want both features", name, f, ok)
		}
	}
}
