package server

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/cri/spec"
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

// writeExec writes an executable script.
func writeExec(t *testing.T, path, body string) string {
	t.Helper()
	if err := os.WriteFile(path, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestStatusListsRuntimeHandlers(t *testing.T) {
	e := newTestEnv(t)
	rc := config.RuntimeConfig{Handlers: []config.RuntimeHandler{
		{Name: "nouserns", UserNamespaces: config.UserNSDisabled},
		{Name: "ext", Runtime: writeExec(t, filepath.Join(t.TempDir(), "oci"), "echo oci version 1.0")},
	}}
	hs, err := newRuntimeHandlers(rc, HandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	e.svc.handlers = hs
	st, err := e.svc.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*runtimeapi.RuntimeHandlerFeatures{}
	for _, h := range st.RuntimeHandlers {
		got[h.Name] = h.Features
	}
	want := map[string][2]bool{ // recursive read-only, user namespaces
		"": {true, true}, "runc": {true, true}, "nouserns": {true, false}, "ext": {false, false},
	}
	if len(st.RuntimeHandlers) != len(want) {
		t.Fatalf("handlers = %v, want %d", st.RuntimeHandlers, len(want))
	}
	for name, w := range want {
		f, ok := got[name]
		if !ok || f.GetRecursiveReadOnlyMounts() != w[0] || f.GetUserNamespaces() != w[1] {
			t.Errorf("handler %q features = %v (listed %v), want rro %v userns %v", name, f, ok, w[0], w[1])
		}
	}
}

// Every setting a handler cannot work with fails startup with an error that names the
// handler and the setting.
func TestNewRuntimeHandlers(t *testing.T) {
	dir := t.TempDir()
	good := writeExec(t, filepath.Join(dir, "good"), "echo 'fake-oci version 1.8.1'; echo commit: x")
	failing := writeExec(t, filepath.Join(dir, "failing"), "echo unsupported >&2; exit 1")
	silent := writeExec(t, filepath.Join(dir, "silent"), "exit 0")
	// runcLike has a features document and no --cgroup-manager flag.
	runcLike := func(name, max string) string {
		return writeExec(t, filepath.Join(dir, name), `case "$1" in --version) echo runc version 1.2.0;; features) echo '{"ociVersionMin":"1.0.0","ociVersionMax":"`+max+`"}';; *) exit 1;; esac`)
	}
	olderSpec, sameSpec := runcLike("older", "1.2.1"), runcLike("same", specs.Version)
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	profile := filepath.Join(dir, "chmod.json")
	if err := os.WriteFile(profile, []byte(`{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}`), 0o644); err != nil {
		t.Fatal(err)
	}
	broken := filepath.Join(dir, "broken.json")
	if err := os.WriteFile(broken, []byte("{not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	node := HandlerFeatures{RecursiveReadOnlyMounts: true, UserNamespaces: true}
	tests := []struct {
		name    string
		h       config.RuntimeHandler
		node    HandlerFeatures
		wantErr []string // all in the error
		check   func(t *testing.T, h runtimeHandler)
	}{
		{name: "external runtime answers", h: config.RuntimeHandler{Name: "crun", Runtime: good}, node: node, check: func(t *testing.T, h runtimeHandler) {
			if h.version != "fake-oci version 1.8.1" || h.features != (HandlerFeatures{}) {
				t.Errorf("version %q features %+v, want the first line and no features", h.version, h.features)
			}
			// No features document: the oldest 1.x spec version; every flag taken.
			if h.ociVersion != ociVersionFallback || !h.shimCgroups {
				t.Errorf("ociVersion %q shimCgroups %v, want %q and true", h.ociVersion, h.shimCgroups, ociVersionFallback)
			}
		}},
		{name: "external runtime reading an older spec", h: config.RuntimeHandler{Name: "runc", Runtime: olderSpec}, check: func(t *testing.T, h runtimeHandler) {
			if h.ociVersion != "1.2.1" || h.shimCgroups {
				t.Errorf("ociVersion %q shimCgroups %v, want its ociVersionMax 1.2.1 and the runtime's own cgroups", h.ociVersion, h.shimCgroups)
			}
		}},
		{name: "external runtime reading berth's spec", h: config.RuntimeHandler{Name: "runc", Runtime: sameSpec}, check: func(t *testing.T, h runtimeHandler) {
			if h.ociVersion != "" {
				t.Errorf("ociVersion %q, want berth's own (\"\")", h.ociVersion)
			}
		}},
		{name: "missing binary", h: config.RuntimeHandler{Name: "crun", Runtime: filepath.Join(dir, "absent")}, wantErr: []string{`runtime handler "crun"`, "absent", "no such file"}},
		{name: "not executable", h: config.RuntimeHandler{Name: "crun", Runtime: plain}, wantErr: []string{`runtime handler "crun"`, "not an executable"}},
		{name: "version fails", h: config.RuntimeHandler{Name: "crun", Runtime: failing}, wantErr: []string{`runtime handler "crun"`, "--version", "unsupported"}},
		{name: "version silent", h: config.RuntimeHandler{Name: "crun", Runtime: silent}, wantErr: []string{`runtime handler "crun"`, "printed nothing"}},
		{name: "user namespaces disabled", h: config.RuntimeHandler{Name: "x", UserNamespaces: config.UserNSDisabled}, node: node, check: func(t *testing.T, h runtimeHandler) {
			if h.features.UserNamespaces || !h.features.RecursiveReadOnlyMounts {
				t.Errorf("features %+v, want rro only", h.features)
			}
		}},
		{name: "user namespaces required on a node with them", h: config.RuntimeHandler{Name: "x", UserNamespaces: config.UserNSRequired}, node: node},
		{name: "user namespaces required on a node without", h: config.RuntimeHandler{Name: "x", UserNamespaces: config.UserNSRequired}, wantErr: []string{`runtime handler "x"`, "user_namespaces"}},
		{name: "seccomp unconfined", h: config.RuntimeHandler{Name: "x", SeccompProfile: "unconfined"}, check: func(t *testing.T, h runtimeHandler) {
			if h.seccompDefault.GetProfileType() != runtimeapi.SecurityProfile_Unconfined {
				t.Errorf("seccomp default %v, want Unconfined", h.seccompDefault)
			}
		}},
		{name: "seccomp profile file", h: config.RuntimeHandler{Name: "x", SeccompProfile: profile}, check: func(t *testing.T, h runtimeHandler) {
			if h.seccompDefault.GetProfileType() != runtimeapi.SecurityProfile_Localhost || h.seccompDefault.GetLocalhostRef() != profile {
				t.Errorf("seccomp default %v, want Localhost %s", h.seccompDefault, profile)
			}
		}},
		{name: "seccomp profile missing", h: config.RuntimeHandler{Name: "x", SeccompProfile: filepath.Join(dir, "none.json")}, wantErr: []string{`runtime handler "x"`, "seccomp_profile", "none.json"}},
		{name: "seccomp profile unparsable", h: config.RuntimeHandler{Name: "x", SeccompProfile: broken}, wantErr: []string{`runtime handler "x"`, "seccomp_profile", "broken.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hs, err := newRuntimeHandlers(config.RuntimeConfig{Handlers: []config.RuntimeHandler{tt.h}}, tt.node, discardLog())
			if len(tt.wantErr) > 0 {
				for _, w := range tt.wantErr {
					if err == nil || !strings.Contains(err.Error(), w) {
						t.Fatalf("err = %v, want containing %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			h, err := hs.lookup(tt.h.Name)
			if err != nil {
				t.Fatal(err)
			}
			if tt.check != nil {
				tt.check(t, h)
			}
		})
	}
}

// default_handler makes the pods without a RuntimeClass use a configured handler.
func TestDefaultHandlerRedirects(t *testing.T) {
	rc := config.RuntimeConfig{DefaultHandler: "strict", Handlers: []config.RuntimeHandler{{Name: "strict", UserNamespaces: config.UserNSDisabled, SeccompProfile: "unconfined"}}}
	hs, err := newRuntimeHandlers(rc, HandlerFeatures{UserNamespaces: true}, discardLog())
	if err != nil {
		t.Fatal(err)
	}
	def, err := hs.lookup("")
	if err != nil {
		t.Fatal(err)
	}
	if def.features.UserNamespaces || def.seccompDefault.GetProfileType() != runtimeapi.SecurityProfile_Unconfined {
		t.Errorf("handler \"\" = %+v, want strict's settings", def)
	}
	if runc, _ := hs.lookup("runc"); !runc.features.UserNamespaces || runc.seccompDefault != nil {
		t.Errorf("handler runc = %+v, want the builtin defaults", runc)
	}
}

// newHandlerEnv is a test env whose node has user namespaces and whose config has handlers.
func newHandlerEnv(t *testing.T, handlers ...config.RuntimeHandler) *testEnv {
	t.Helper()
	e := newTestEnv(t)
	e.svc.Close()
	e.cfg.Runtime.Handlers = handlers
	e.features = HandlerFeatures{UserNamespaces: true}
	e.svc = e.newService(t)
	return e
}

func TestRunPodSandboxHandlerChecks(t *testing.T) {
	ext := writeExec(t, filepath.Join(t.TempDir(), "oci"), "echo oci 1.0")
	e := newHandlerEnv(t,
		config.RuntimeHandler{Name: "ext", Runtime: ext},
		config.RuntimeHandler{Name: "nouserns", UserNamespaces: config.UserNSDisabled},
		config.RuntimeHandler{Name: "userns", UserNamespaces: config.UserNSRequired},
	)
	ctx := context.Background()
	tests := []struct {
		name, handler string
		pod           *runtimeapi.PodSandboxConfig
		want          func(error) bool
	}{
		{name: "user namespace on an external runtime", handler: "ext", pod: podConfig("a", withUserNS(kubeletUserNS())), want: errdefs.IsNotImplemented},
		{name: "user namespace on a handler without", handler: "nouserns", pod: podConfig("b", withUserNS(kubeletUserNS())), want: errdefs.IsFailedPrecondition},
		{name: "no user namespace on a handler requiring one", handler: "userns", pod: podConfig("c"), want: errdefs.IsFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.svc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: tt.pod, RuntimeHandler: tt.handler})
			if !tt.want(err) || !strings.Contains(err.Error(), `"`+tt.handler+`"`) {
				t.Fatalf("RunPodSandbox = %v, want the classified error naming the handler", err)
			}
			e.assertNothingLeft(t)
		})
	}
	for _, ok := range []struct {
		handler string
		pod     *runtimeapi.PodSandboxConfig
		runtime string // the shim's external runtime
	}{{"nouserns", podConfig("d"), ""}, {"userns", podConfig("e", withUserNS(kubeletUserNS())), ""}, {"ext", podConfig("f"), ext}} {
		resp, err := e.svc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: ok.pod, RuntimeHandler: ok.handler})
		if err != nil {
			t.Fatalf("RunPodSandbox(%s) = %v, want a pod", ok.handler, err)
		}
		e.shims.mu.Lock()
		last := e.shims.started[len(e.shims.started)-1]
		e.shims.mu.Unlock()
		if last.OCIRuntime != ok.runtime || last.OCIShimCgroups != (ok.runtime != "") {
			t.Errorf("handler %s: shim started with runtime %q (shim cgroups %v), want %q", ok.handler, last.OCIRuntime, last.OCIShimCgroups, ok.runtime)
		}
		if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId}); err != nil {
			t.Fatal(err)
		}
	}
	e.assertNothingLeft(t)
}

// A handler's seccomp default reaches the spec generator for its pods' containers only; a pod
// that outlived its handler's configuration gets no container.
func TestCreateContainerHandlerSeccomp(t *testing.T) {
	e := newHandlerEnv(t, config.RuntimeHandler{Name: "loose", SeccompProfile: "unconfined"})
	var got []*runtimeapi.SecurityProfile
	capture := func(id string, cfg *runtimeapi.ContainerConfig, sb spec.SandboxInfo, img spec.ImageConfig, opts spec.Options) (*specs.Spec, error) {
		got = append(got, opts.RuntimeDefaultSeccomp)
		return e.generate(id, cfg, sb, img, opts)
	}
	e.svc.genSpec = capture
	ctx := context.Background()
	ids := map[string]string{}
	for _, h := range []string{"", "loose"} {
		pod := podConfig("p" + h)
		resp, err := e.svc.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: pod, RuntimeHandler: h})
		if err != nil {
			t.Fatal(err)
		}
		ids[h] = resp.PodSandboxId
		e.createContainer(t, resp.PodSandboxId, pod, containerConfig("c"))
	}
	if len(got) != 2 || got[0] != nil || got[1].GetProfileType() != runtimeapi.SecurityProfile_Unconfined {
		t.Fatalf("RuntimeDefaultSeccomp per container = %v, want nil (default handler) then Unconfined", got)
	}

	e.svc.Close()
	e.cfg.Runtime.Handlers = nil // the agent restarts without the handler
	e.svc = e.newService(t)
	e.svc.genSpec = capture
	pod := podConfig("ploose")
	_, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: ids["loose"], Config: containerConfig("d"), SandboxConfig: pod})
	if !errdefs.IsFailedPrecondition(err) || !strings.Contains(err.Error(), `"loose"`) {
		t.Fatalf("CreateContainer in a pod whose handler is gone = %v, want FailedPrecondition naming it", err)
	}
}

// A handler that cannot work fails the agent's startup, but not `berth doctor` (Offline),
// which serves no pods and must still reach the ledger.
func TestNewBrokenHandler(t *testing.T) {
	e := newTestEnv(t)
	e.svc.Close()
	e.cfg.Runtime.Handlers = []config.RuntimeHandler{{Name: "gone", Runtime: "/nonexistent/oci"}}
	for _, offline := range []bool{false, true} {
		svc, err := New(Options{
			Config: e.cfg, Images: struct{ ImageStore }{}, ContainerImages: e.images, Shims: e.shims, Namespaces: e.ns,
			Cgroups: e.cg, Mounter: e.mounts, GenerateSpec: e.generate, Network: e.net, Offline: offline,
		})
		if svc != nil {
			svc.Close()
		}
		if offline && err != nil {
			t.Errorf("offline New with a broken handler = %v, want a service", err)
		}
		if !offline && (err == nil || !strings.Contains(err.Error(), `runtime handler "gone"`)) {
			t.Errorf("New with a broken handler = %v, want an error naming it", err)
		}
	}
}
