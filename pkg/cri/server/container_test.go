package server

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

func TestContainerLifecycle(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	logDir := filepath.Join(t.TempDir(), "logs")
	pod := podConfig("p", withLogDir(logDir))
	podID := e.runPod(t, pod)
	cfg := containerConfig("app")
	hostPath := filepath.Join(t.TempDir(), "missing", "dir")
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: hostPath}}
	id := e.createContainer(t, podID, pod, cfg)

	c, err := e.svc.store.Containers.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	md := c.Metadata()
	if e.mounts.mounts[md.Rootfs] != "overlay" {
		t.Fatalf("rootfs %s not mounted: %v", md.Rootfs, e.mounts.mounts)
	}
	if _, err := os.Stat(filepath.Join(md.Bundle, "config.json")); err != nil {
		t.Fatalf("config.json: %v", err)
	}
	if fi, err := os.Stat(hostPath); err != nil || !fi.IsDir() {
		t.Fatalf("missing bind source not created as a directory: %v", err)
	}
	if e.images.leases[id] != md.ImageID {
		t.Fatalf("image not leased by the container: %v", e.images.leases)
	}
	if _, err := e.svc.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: containerConfig("app"), SandboxConfig: pod}); !errdefs.IsAlreadyExists(err) || !strings.Contains(err.Error(), id) {
		t.Fatalf("duplicate CreateContainer = %v, want AlreadyExists naming %s", err, id)
	}

	status := func() *runtimeapi.ContainerStatus {
		t.Helper()
		resp, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
		if err != nil {
			t.Fatal(err)
		}
		return resp.Status
	}
	st := status()
	if st.State != runtimeapi.ContainerState_CONTAINER_CREATED || st.Image.Image != testImage || st.ImageRef != md.ImageID || st.ImageId != md.ImageID {
		t.Fatalf("created status = %v", st)
	}
	if st.LogPath != filepath.Join(logDir, "app.log") || st.User.Linux.Uid != 1000 || st.User.Linux.Gid != 1001 || len(st.User.Linux.SupplementalGroups) != 1 {
		t.Fatalf("created status log path %q user %v", st.LogPath, st.User)
	}
	if _, err := e.svc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("ReopenContainerLog on created = %v, want FailedPrecondition", err)
	}

	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("second StartContainer = %v, want FailedPrecondition", err)
	}
	st = status()
	if st.State != runtimeapi.ContainerState_CONTAINER_RUNNING || st.StartedAt == 0 {
		t.Fatalf("running status = %v", st)
	}
	resp, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		SandboxID   string          `json:"sandboxID"`
		Pid         int             `json:"pid"`
		RuntimeSpec json.RawMessage `json:"runtimeSpec"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.SandboxID != podID || info.Pid == 0 || len(info.RuntimeSpec) == 0 {
		t.Fatalf("verbose info = %s (%v)", resp.Info["info"], err)
	}
	if _, err := e.svc.ReopenContainerLog(ctx, &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err != nil {
		t.Fatalf("ReopenContainerLog on running = %v", err)
	}

	// The image's STOPSIGNAL (SIGQUIT) is sent first; the fake exits on it.
	if _, err := e.svc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 5}); err != nil {
		t.Fatal(err)
	}
	sh := e.shims.get(e.svc.shimDir(podID))
	if got := sh.containers[id].killSignals; len(got) != 1 || got[0] != syscall.SIGQUIT {
		t.Fatalf("signals sent = %v, want [SIGQUIT]", got)
	}
	st = status()
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 128+int32(syscall.SIGQUIT) || st.Reason != store.ReasonError || st.FinishedAt == 0 {
		t.Fatalf("exited status = %v", st)
	}
	if _, err := e.svc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StopContainer on exited = %v", err)
	}
	for i := range 2 {
		if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("RemoveContainer #%d: %v", i, err)
		}
	}
	if len(e.mounts.mounts) != 1 { // the pod's shm is all that is left
		t.Fatalf("mounts after remove: %v", e.mounts.mounts)
	}
	if _, err := os.Stat(md.Bundle); !os.IsNotExist(err) {
		t.Fatalf("bundle left: %v", err)
	}
	if _, err := os.Stat(md.LayerDir); !os.IsNotExist(err) {
		t.Fatalf("layer dir left: %v", err)
	}
	if e.images.leaseCount() != 0 {
		t.Fatalf("lease left: %v", e.images.leases)
	}
	// The name is free again.
	e.createContainer(t, podID, pod, containerConfig("app"))
}

// The kubelet creates a container from the image's id and names the user's image in
// user_specified_image; the status reports the latter, which kubectl shows as the pod's image.
func TestContainerStatusReportsUserSpecifiedImage(t *testing.T) {
	e := newTestEnv(t)
	pod := podConfig("p", withLogDir(t.TempDir()))
	podID := e.runPod(t, pod)
	cfg := containerConfig("app")
	cfg.Image.UserSpecifiedImage = "registry.example/app:v1"
	id := e.createContainer(t, podID, pod, cfg)
	resp, err := e.svc.ContainerStatus(context.Background(), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if img := resp.Status.Image; img.Image != "registry.example/app:v1" || img.UserSpecifiedImage != "registry.example/app:v1" {
		t.Fatalf("status image = %v, want the user's image", img)
	}
	if resp.Status.ImageRef == "" || resp.Status.ImageRef == "registry.example/app:v1" {
		t.Fatalf("status image ref = %q, want the image's id", resp.Status.ImageRef)
	}
}

func TestStopContainerEscalates(t *testing.T) {
	tests := []struct {
		name        string
		timeout     int64
		wantSignals []syscall.Signal
	}{
		{name: "ignored signal then SIGKILL", timeout: 1, wantSignals: []syscall.Signal{syscall.SIGQUIT, syscall.SIGKILL}},
		{name: "timeout zero kills at once", timeout: 0, wantSignals: []syscall.Signal{syscall.SIGKILL}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			ctx := context.Background()
			pod := podConfig("p")
			podID := e.runPod(t, pod)
			id := e.createContainer(t, podID, pod, containerConfig("app"))
			if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			sh := e.shims.get(e.svc.shimDir(podID))
			sh.mu.Lock()
			sh.containers[id].ignoreTerm = true
			sh.mu.Unlock()
			start := time.Now()
			if _, err := e.svc.StopContainer(ctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: tt.timeout}); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < time.Duration(tt.timeout)*time.Second {
				t.Fatalf("stop returned after %s, before the %ds timeout", d, tt.timeout)
			}
			sh.mu.Lock()
			got := sh.containers[id].killSignals
			cut := sh.waitsCut
			sh.mu.Unlock()
			// One Wait spans the grace period and the kill: none is abandoned mid-answer.
			if cut != 0 {
				t.Errorf("%d shim Waits were cut off by the agent's deadline", cut)
			}
			if len(got) != len(tt.wantSignals) {
				t.Fatalf("signals = %v, want %v", got, tt.wantSignals)
			}
			for i := range got {
				if got[i] != tt.wantSignals[i] {
					t.Fatalf("signals = %v, want %v", got, tt.wantSignals)
				}
			}
			c, _ := e.svc.store.Containers.Get(id)
			if st := c.Status(); st.State != store.ContainerExited || st.ExitCode != 137 {
				t.Fatalf("status = %+v, want exited 137", st)
			}
		})
	}
}

func TestExitIsTracked(t *testing.T) {
	tests := []struct {
		name       string
		code       int32
		wantReason string
	}{
		{name: "success", code: 0, wantReason: store.ReasonCompleted},
		{name: "failure", code: 3, wantReason: store.ReasonError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			pod := podConfig("p")
			podID := e.runPod(t, pod)
			id := e.createContainer(t, podID, pod, containerConfig("app"))
			if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			e.shims.get(e.svc.shimDir(podID)).exit(id, tt.code)
			c, _ := e.svc.store.Containers.Get(id)
			waitFor(t, func() bool { return c.Status().State == store.ContainerExited })
			if st := c.Status(); st.ExitCode != tt.code || st.Reason != tt.wantReason {
				t.Fatalf("status = %+v, want code %d reason %s", st, tt.code, tt.wantReason)
			}
		})
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCreateContainerRollback(t *testing.T) {
	tests := []struct {
		name    string
		inject  func(e *testEnv, cfg *runtimeapi.ContainerConfig)
		wantErr error
		wantMsg string
	}{
		{name: "image not found", inject: func(e *testEnv, cfg *runtimeapi.ContainerConfig) { cfg.Image.Image = "nope:1" },
			wantErr: errdefs.ErrNotFound, wantMsg: `"nope:1"`},
		{name: "rootfs mount", inject: func(e *testEnv, _ *runtimeapi.ContainerConfig) { e.mounts.fail["overlay"] = errInjected },
			wantErr: errInjected, wantMsg: "mount rootfs"},
		{name: "spec", inject: func(e *testEnv, _ *runtimeapi.ContainerConfig) { e.specErr = errInjected },
			wantErr: errInjected, wantMsg: "generate spec"},
		{name: "relative host path", inject: func(e *testEnv, cfg *runtimeapi.ContainerConfig) {
			cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "rel"}}
		}, wantErr: errdefs.ErrInvalidArgument, wantMsg: "rel"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			pod := podConfig("p")
			podID := e.runPod(t, pod)
			cfg := containerConfig("app")
			tt.inject(e, cfg)
			_, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
			if !errors.Is(err, tt.wantErr) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Fatalf("CreateContainer = %v, want %v mentioning %s", err, tt.wantErr, tt.wantMsg)
			}
			if n := len(e.svc.store.Containers.List()); n != 0 {
				t.Fatalf("%d container records after failed create", n)
			}
			rs, _ := e.svc.store.Resources()
			for _, r := range rs {
				if r.Owner != podID {
					t.Fatalf("resource left by the failed create: %+v", r)
				}
			}
			if e.images.leaseCount() != 0 {
				t.Fatalf("lease left: %v", e.images.leases)
			}
			if _, held := e.svc.names.Holder(containerName(cfg.Metadata, pod.Metadata)); held {
				t.Fatal("container name still reserved")
			}
		})
	}
}

func TestListContainersFilters(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podA, podB := podConfig("a"), podConfig("b")
	a := e.runPod(t, podA)
	b := e.runPod(t, podB)
	c1 := e.createContainer(t, a, podA, containerConfig("one"))
	c2 := e.createContainer(t, a, podA, containerConfig("two"))
	c3 := e.createContainer(t, b, podB, containerConfig("three"))
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: c2}); err != nil {
		t.Fatal(err)
	}
	running := &runtimeapi.ContainerStateValue{State: runtimeapi.ContainerState_CONTAINER_RUNNING}
	tests := []struct {
		name   string
		filter *runtimeapi.ContainerFilter
		want   []string
	}{
		{name: "all", want: []string{c1, c2, c3}},
		{name: "id prefix", filter: &runtimeapi.ContainerFilter{Id: c3[:10]}, want: []string{c3}},
		{name: "sandbox prefix", filter: &runtimeapi.ContainerFilter{PodSandboxId: a[:10]}, want: []string{c1, c2}},
		{name: "state", filter: &runtimeapi.ContainerFilter{State: running}, want: []string{c2}},
		{name: "label", filter: &runtimeapi.ContainerFilter{LabelSelector: map[string]string{"c": "one"}}, want: []string{c1}},
		{name: "sandbox and state", filter: &runtimeapi.ContainerFilter{PodSandboxId: b, State: running}, want: nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := e.svc.ListContainers(ctx, &runtimeapi.ListContainersRequest{Filter: tt.filter})
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, c := range resp.Containers {
				got = append(got, c.Id)
			}
			if !sameSet(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestUpdateContainerResourcesPersists(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, containerConfig("app"))
	_, err := e.svc.UpdateContainerResources(ctx, &runtimeapi.UpdateContainerResourcesRequest{
		ContainerId: id, Linux: &runtimeapi.LinuxContainerResources{CpuShares: 256, MemoryLimitInBytes: 64 << 20},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Close()
	svc := e.newService(t)
	resp, err := svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if r := resp.Status.Resources.GetLinux(); r.GetCpuShares() != 256 || r.GetMemoryLimitInBytes() != 64<<20 {
		t.Fatalf("resources after restart = %v", r)
	}
}

func TestStopSignal(t *testing.T) {
	tests := []struct {
		name  string
		cri   runtimeapi.Signal
		image string
		want  syscall.Signal
	}{
		{name: "default", want: syscall.SIGTERM},
		{name: "image name", image: "SIGINT", want: syscall.SIGINT},
		{name: "image short name", image: "usr1", want: syscall.SIGUSR1},
		{name: "image number", image: "9", want: syscall.SIGKILL},
		{name: "cri wins", cri: runtimeapi.Signal_SIGNAL_SIGHUP, image: "SIGINT", want: syscall.SIGHUP},
		{name: "bad image signal", image: "SIGNOPE", want: syscall.SIGTERM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			md := store.ContainerMetadata{StopSignal: tt.image, Config: store.ContainerConfig{ContainerConfig: &runtimeapi.ContainerConfig{StopSignal: tt.cri}}}
			if got := stopSignal(md); got != tt.want {
				t.Fatalf("stopSignal = %v, want %v", got, tt.want)
			}
		})
	}
}
