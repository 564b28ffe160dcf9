package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runPodCleanup removes a pod that should not have been created.
func runPodCleanup(t *testing.T, a *agent, id string) {
	t.Cleanup(func() {
		_, _ = a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id})
		_, _ = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id})
	})
}

// emptyDir fails the test when dir has entries.
func emptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s: %d entries created", dir, len(entries))
	}
}

// The root shim writes the CRI log: the path stays below the pod's log directory and no
// symlink planted there (by a container with a hostPath of /var/log, say) is followed.
func TestLogPathStaysInPodLogDir(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "logpath"))
	outside := t.TempDir()
	secret := filepath.Join(outside, "shadow")
	must(t, os.WriteFile(secret, []byte("root:x:\n"), 0o600), "write secret")
	must(t, os.Symlink(outside, filepath.Join(p.cfg.LogDirectory, "evil")), "plant dir symlink")
	must(t, os.Symlink(secret, filepath.Join(p.cfg.LogDirectory, "c.log")), "plant file symlink")

	for _, lp := range []string{"../escape.log", "/etc/berth-e2e.log", "evil/0.log", "c.log"} {
		cfg := ctrConfig("bad", env.images.busybox, withShell("echo pwned"))
		cfg.LogPath = lp
		if err := tryCreate(t, a, p, cfg); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), lp) {
			t.Errorf("log path %q: %v, want InvalidArgument naming it", lp, err)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(p.cfg.LogDirectory), "escape.log")); !os.IsNotExist(err) {
		t.Errorf("escaping log created: %v", err)
	}
	if b, _ := os.ReadFile(secret); string(b) != "root:x:\n" {
		t.Errorf("symlink target written: %q", b)
	}

	// The kubelet's layout works, and a symlink swapped in later is refused at reopen.
	c := ctrConfig("app", env.images.busybox, withShell("while true; do echo tick; sleep 0.1; done"))
	c.LogPath = "app/0.log"
	id := runContainer(t, a, p, c)
	path := logPath(p, c)
	waitLog(t, path, "tick", 30*time.Second)
	appDir := filepath.Join(p.cfg.LogDirectory, "app")
	must(t, os.Rename(appDir, appDir+".old"), "move the log dir away")
	must(t, os.Symlink(outside, appDir), "plant a symlink in its place")
	_, err := a.rt.ReopenContainerLog(ctxT(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	if err == nil {
		t.Error("ReopenContainerLog through a planted symlink succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "0.log")); !os.IsNotExist(err) {
		t.Errorf("log reopened outside the log directory: %v", err)
	}
	waitLog(t, filepath.Join(appDir+".old", "0.log"), "tick", 5*time.Second)
}

// A refused CreateContainer creates no bind-mount source: every mount and the rest of the
// request are checked first.
func TestContainerRefusedCreatesNoHostPath(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "nohostpath"))
	base := t.TempDir()
	tests := []struct {
		name   string
		mutate ctrOption
	}{
		{name: "second mount invalid", mutate: func(c *runtimeapi.ContainerConfig) {
			c.Mounts = append(c.Mounts, &runtimeapi.Mount{ContainerPath: "/b", HostPath: filepath.Join(base, "b"), MountOptions: []string{"suid"}})
		}},
		{name: "unknown capability", mutate: func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_NOT_A_THING"}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ctrConfig("c", env.images.busybox, withCommand("true"), tt.mutate)
			cfg.Mounts = append([]*runtimeapi.Mount{{ContainerPath: "/a", HostPath: filepath.Join(base, "a", "deep")}}, cfg.Mounts...)
			if err := tryCreate(t, a, p, cfg); status.Code(err) != codes.InvalidArgument {
				t.Fatalf("CreateContainer = %v, want InvalidArgument", err)
			}
			emptyDir(t, base)
		})
	}
}

// An unknown runtime handler is refused before anything exists; the same pod then runs with
// the default handler.
func TestPodUnknownRuntimeHandler(t *testing.T) {
	a := env.shared
	cfg := podConfig(t, "handler")
	wrong, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: "foo"})
	if err == nil {
		runPodCleanup(t, a, wrong.PodSandboxId)
	}
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"foo"`) {
		t.Fatalf("RunPodSandbox(handler foo) = %v, want NotFound naming it", err)
	}
	resp, err := a.rt.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	must(t, err, "list pods")
	for _, sb := range resp.Items {
		if sb.Metadata.Uid == cfg.Metadata.Uid {
			t.Fatalf("refused pod listed: %v", sb)
		}
	}
	runPod(t, a, cfg)
	st, err := a.rt.Status(ctxT(t), &runtimeapi.StatusRequest{})
	must(t, err, "status")
	names := map[string]bool{}
	for _, h := range st.RuntimeHandlers {
		names[h.Name] = true
	}
	if !names[""] || !names["runc"] || len(names) != 2 {
		t.Errorf("runtime handlers %v, want \"\" and \"runc\"", st.RuntimeHandlers)
	}
}

// A container may share the pid namespace of a container of its own pod only.
func TestContainerPIDTargetOtherPod(t *testing.T) {
	a := env.shared
	pa := runPod(t, a, podConfig(t, "target-a"))
	pb := runPod(t, a, podConfig(t, "target-b"))
	target := runContainer(t, a, pa, ctrConfig("app", env.images.busybox, withCommand("sleep", "1000")))
	debug := func() *runtimeapi.ContainerConfig {
		return ctrConfig("debug", env.images.busybox, withCommand("sleep", "1000"), func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: target},
			}
		})
	}
	err := tryCreate(t, a, pb, debug())
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), pb.id) {
		t.Fatalf("CreateContainer targeting another pod = %v, want NotFound naming the target and the pod", err)
	}
	runContainer(t, a, pa, debug())
}
