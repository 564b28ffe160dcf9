package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
)

// createLeftovers counts what a create may leave behind.
type createLeftovers struct{ containers, resources, leases int }

func (e *testEnv) leftovers(t *testing.T) createLeftovers {
	t.Helper()
	rs, err := e.svc.store.Resources()
	if err != nil {
		t.Fatal(err)
	}
	return createLeftovers{len(e.svc.store.Containers.List()), len(rs), e.images.leaseCount()}
}

// assertNoContainerLeft checks that a refused create left no record, resource, lease or name
// beyond what there was before (before).
func assertNoContainerLeft(t *testing.T, e *testEnv, before createLeftovers, pod *runtimeapi.PodSandboxConfig, cfg *runtimeapi.ContainerConfig) {
	t.Helper()
	if got := e.leftovers(t); got != before {
		t.Errorf("refused create left containers/resources/leases %+v, was %+v", got, before)
	}
	if _, held := e.svc.names.Holder(containerName(cfg.Metadata, pod.Metadata)); held {
		t.Error("container name still reserved")
	}
}

// assertEmptyDir checks that nothing was created in dir (it was empty).
func assertEmptyDir(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("%s: %d entries created", dir, len(entries))
	}
}

func TestCreateContainerLogPath(t *testing.T) {
	tests := []struct {
		name    string
		logPath string
		plant   func(t *testing.T, logDir, outside string)
		want    string // the log file below the log directory; "" = refused
	}{
		{name: "flat", logPath: "app.log", want: "app.log"},
		{name: "kubelet layout", logPath: "app/0.log", want: "app/0.log"},
		{name: "dot dot inside", logPath: "x/../app/1.log", want: "app/1.log"},
		{name: "escape by dot dot", logPath: "../../x"},
		{name: "escape deeper", logPath: "app/../../x/0.log"},
		{name: "absolute", logPath: "/etc/x.log"},
		{name: "the directory itself", logPath: "."},
		{name: "symlinked component", logPath: "app/0.log", plant: func(t *testing.T, logDir, outside string) {
			if err := os.Symlink(outside, filepath.Join(logDir, "app")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlinked deeper component", logPath: "app/sub/0.log", plant: func(t *testing.T, logDir, outside string) {
			if err := os.Mkdir(filepath.Join(logDir, "app"), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Symlink(outside, filepath.Join(logDir, "app", "sub")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "symlinked file", logPath: "app.log", plant: func(t *testing.T, logDir, outside string) {
			if err := os.Symlink(filepath.Join(outside, "shadow"), filepath.Join(logDir, "app.log")); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "fifo", logPath: "app.log", plant: func(t *testing.T, logDir, outside string) {
			if err := unix.Mkfifo(filepath.Join(logDir, "app.log"), 0o644); err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			base := t.TempDir()
			logDir, outside := filepath.Join(base, "logs"), filepath.Join(base, "outside")
			for _, d := range []string{logDir, outside} {
				if err := os.Mkdir(d, 0o755); err != nil {
					t.Fatal(err)
				}
			}
			if tt.plant != nil {
				tt.plant(t, logDir, outside)
			}
			pod := podConfig("p", withLogDir(logDir))
			podID := e.runPod(t, pod)
			cfg := containerConfig("app")
			cfg.LogPath = tt.logPath
			before := e.leftovers(t)
			resp, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
			assertEmptyDir(t, outside)
			if _, err := os.Stat(filepath.Join(base, "x")); !os.IsNotExist(err) {
				t.Errorf("escape target created: %v", err)
			}
			if tt.want == "" {
				if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "app_p_") || !strings.Contains(err.Error(), tt.logPath) {
					t.Fatalf("CreateContainer(log path %q) = %v, want InvalidArgument naming the container and the path", tt.logPath, err)
				}
				assertNoContainerLeft(t, e, before, pod, cfg)
				return
			}
			if err != nil {
				t.Fatalf("CreateContainer(log path %q): %v", tt.logPath, err)
			}
			c, err := e.svc.store.Containers.Get(resp.ContainerId)
			if err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(logDir, tt.want)
			if got := c.Metadata().LogPath; got != want {
				t.Fatalf("log path %q, want %q", got, want)
			}
			if fi, err := os.Stat(filepath.Dir(want)); err != nil || !fi.IsDir() {
				t.Fatalf("log file directory not created: %v", err)
			}
		})
	}
}

// A log directory reached through a symlink (e.g. /var/log on another disk) is the kubelet's
// choice and is followed; the shim gets the resolved path, which has no symlink left.
func TestCreateContainerLogDirBehindSymlink(t *testing.T) {
	e := newTestEnv(t)
	base := t.TempDir()
	real := filepath.Join(base, "real")
	if err := os.Mkdir(real, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(real, filepath.Join(base, "link")); err != nil {
		t.Fatal(err)
	}
	pod := podConfig("p", withLogDir(filepath.Join(base, "link", "pod")))
	podID := e.runPod(t, pod)
	cfg := containerConfig("app")
	cfg.LogPath = "app/0.log"
	id := e.createContainer(t, podID, pod, cfg)
	c, _ := e.svc.store.Containers.Get(id)
	if got, want := c.Metadata().LogPath, filepath.Join(real, "pod", "app", "0.log"); got != want {
		t.Fatalf("log path %q, want the resolved %q", got, want)
	}
}

func TestCreateContainerRefusedLeavesNoHostDirs(t *testing.T) {
	tests := []struct {
		name    string
		inject  func(t *testing.T, e *testEnv, podID string, cfg *runtimeapi.ContainerConfig, bad string)
		wantErr error
	}{
		{name: "second mount relative", wantErr: errdefs.ErrInvalidArgument,
			inject: func(t *testing.T, e *testEnv, _ string, cfg *runtimeapi.ContainerConfig, bad string) {
				cfg.Mounts = append(cfg.Mounts, &runtimeapi.Mount{ContainerPath: "/b", HostPath: "relative"})
			}},
		{name: "second mount bad option", wantErr: errdefs.ErrInvalidArgument,
			inject: func(t *testing.T, e *testEnv, _ string, cfg *runtimeapi.ContainerConfig, bad string) {
				cfg.Mounts = append(cfg.Mounts, &runtimeapi.Mount{ContainerPath: "/b", HostPath: bad, MountOptions: []string{"suid"}})
			}},
		{name: "second mount bad propagation", wantErr: errdefs.ErrInvalidArgument,
			inject: func(t *testing.T, e *testEnv, _ string, cfg *runtimeapi.ContainerConfig, bad string) {
				cfg.Mounts = append(cfg.Mounts, &runtimeapi.Mount{ContainerPath: "/b", HostPath: bad, Propagation: 42})
			}},
		{name: "log path escapes", wantErr: errdefs.ErrInvalidArgument,
			inject: func(t *testing.T, e *testEnv, _ string, cfg *runtimeapi.ContainerConfig, bad string) {
				cfg.LogPath = "../x.log"
			}},
		{name: "spec refused", wantErr: errInjected,
			inject: func(t *testing.T, e *testEnv, _ string, _ *runtimeapi.ContainerConfig, _ string) {
				e.specErr = errInjected
			}},
		// Created, then rolled back: the shim is unreachable after the host paths exist.
		{name: "shim create fails", wantErr: errdefs.ErrUnavailable,
			inject: func(t *testing.T, e *testEnv, podID string, _ *runtimeapi.ContainerConfig, _ string) {
				c := e.svc.takeClient(podID)
				t.Cleanup(func() { e.svc.setClient(podID, c) })
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			base := t.TempDir()
			pod := podConfig("p", withLogDir(filepath.Join(base, "logs")))
			podID := e.runPod(t, pod)
			cfg := containerConfig("app")
			cfg.LogPath = "app/0.log"
			cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: filepath.Join(base, "new", "deep")}}
			tt.inject(t, e, podID, cfg, filepath.Join(base, "bad"))
			before := e.leftovers(t)
			_, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("CreateContainer = %v, want %v", err, tt.wantErr)
			}
			assertEmptyDir(t, base)
			assertNoContainerLeft(t, e, before, pod, cfg)
		})
	}
}

// A directory that existed before the create is not removed by its rollback.
func TestCreateContainerRollbackKeepsExistingHostDirs(t *testing.T) {
	e := newTestEnv(t)
	base := t.TempDir()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	cfg := containerConfig("app")
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/a", HostPath: base}, {ContainerPath: "/b", HostPath: filepath.Join(base, "new")}}
	c := e.svc.takeClient(podID)
	_, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
	e.svc.setClient(podID, c)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("CreateContainer with no shim = %v, want Unavailable", err)
	}
	if _, err := os.Stat(base); err != nil {
		t.Fatalf("existing host path removed by the rollback: %v", err)
	}
	assertEmptyDir(t, base)
}

func TestCreateContainerPIDTarget(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podA, podB := podConfig("a"), podConfig("b")
	idA, idB := e.runPod(t, podA), e.runPod(t, podB)
	target := e.createContainer(t, idA, podA, containerConfig("app"))
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: target}); err != nil {
		t.Fatal(err)
	}
	debug := func() *runtimeapi.ContainerConfig {
		cfg := containerConfig("debug")
		cfg.Linux = &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
			NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_TARGET, TargetId: target},
		}}
		return cfg
	}
	var gotOpts []string
	gen := e.svc.genSpec
	e.svc.genSpec = func(id string, cfg *runtimeapi.ContainerConfig, sb spec.SandboxInfo, img spec.ImageConfig, opts spec.Options) (*specs.Spec, error) {
		gotOpts = append(gotOpts, opts.TargetPIDNSPath)
		return gen(id, cfg, sb, img, opts)
	}

	// Another pod's container is unknown to this pod.
	cfg := debug()
	before := e.leftovers(t)
	_, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: idB, Config: cfg, SandboxConfig: podB})
	if !errdefs.IsNotFound(err) || !strings.Contains(err.Error(), target) || !strings.Contains(err.Error(), idB) || !strings.Contains(err.Error(), "debug_b_") {
		t.Fatalf("CreateContainer targeting another pod = %v, want NotFound naming the target, the sandbox and the container", err)
	}
	if len(gotOpts) != 0 {
		t.Fatalf("spec generated for a refused target: %v", gotOpts)
	}
	assertNoContainerLeft(t, e, before, podB, cfg)

	// The same pod's container is joined.
	e.createContainer(t, idA, podA, debug())
	if len(gotOpts) != 1 || !strings.HasPrefix(gotOpts[0], "/proc/") || !strings.HasSuffix(gotOpts[0], "/ns/pid") {
		t.Fatalf("target pid namespace = %v", gotOpts)
	}
}
