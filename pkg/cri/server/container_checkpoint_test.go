package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/checkpoint"
)

// runCounter runs a pod with one started container whose writable layer holds a file.
func (e *testEnv) runCounter(t *testing.T, cfg *runtimeapi.ContainerConfig) (podID, id string) {
	t.Helper()
	pod := podConfig("ckpt")
	podID = e.runPod(t, pod)
	id = e.createContainer(t, podID, pod, cfg)
	if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("StartContainer: %v", err)
	}
	upper := filepath.Join(e.svc.layerDir(id), "upper")
	if err := os.WriteFile(filepath.Join(upper, "count"), []byte("41\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return podID, id
}

// checkpointedCounter checkpoints a counter container (runCounter) to an archive, removes
// its pod and returns the archive's path and the checkpointed container's id.
func (e *testEnv) checkpointedCounter(t *testing.T) (loc, id string) {
	t.Helper()
	podID, id := e.runCounter(t, containerConfig("counter"))
	loc = filepath.Join(t.TempDir(), "counter.tar")
	if _, err := e.svc.CheckpointContainer(context.Background(), &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: loc}); err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	e.removePod(t, podID)
	return loc, id
}

func (e *testEnv) removePod(t *testing.T, podID string) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("StopPodSandbox: %v", err)
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}

func TestCheckpointContainerWritesArchive(t *testing.T) {
	e := newTestEnv(t)
	podID, id := e.runCounter(t, containerConfig("counter"))
	loc := filepath.Join(t.TempDir(), "counter.tar")

	_, err := e.svc.CheckpointContainer(context.Background(), &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: loc, Timeout: 30})
	if err != nil {
		t.Fatalf("CheckpointContainer: %v", err)
	}
	dest := t.TempDir()
	c, err := checkpoint.Extract(context.Background(), loc, dest)
	if err != nil {
		t.Fatalf("extract: %v", err)
	}
	if c.Config.ID != id || c.Config.Name != "counter" || c.Config.RootfsImageName != testImage || c.Config.Labels["c"] != "counter" {
		t.Errorf("config.dump = %+v", c.Config)
	}
	if c.Status.State != "running" || c.Spec.Process == nil {
		t.Errorf("status %+v, spec process %v", c.Status, c.Spec.Process)
	}
	if b, err := os.ReadFile(filepath.Join(c.ImagesDir, "pages-1.img")); err != nil || string(b) != "memory of "+id {
		t.Errorf("CRIU image = %q, %v", b, err)
	}
	rootfs := t.TempDir()
	if err := checkpoint.ApplyRootfsDiff(context.Background(), dest, rootfs); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(rootfs, "count")); err != nil || string(b) != "41\n" {
		t.Errorf("writable layer file = %q, %v", b, err)
	}
	if st := e.svc.store.Containers.List()[0].Status(); st.State != "running" {
		t.Errorf("container is %s after the checkpoint; want it left running", st.State)
	}
	assertNoEntries(t, e.svc.checkpointScratch())
	e.removePod(t, podID)
	e.assertNothingLeft(t)
}

func assertNoEntries(t *testing.T, dir string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	if len(ents) != 0 {
		t.Errorf("%s not empty: %v", dir, ents)
	}
}

func TestCheckpointContainerRefusals(t *testing.T) {
	tests := []struct {
		name     string
		setup    func(t *testing.T, e *testEnv) (id, location string)
		want     func(error) bool
		dumpsRun bool
	}{
		{"unknown container", func(t *testing.T, e *testEnv) (string, string) {
			return "nosuchcontainer", filepath.Join(t.TempDir(), "x.tar")
		}, errdefs.IsNotFound, false},
		{"created, not running", func(t *testing.T, e *testEnv) (string, string) {
			pod := podConfig("p")
			return e.createContainer(t, e.runPod(t, pod), pod, containerConfig("c")), filepath.Join(t.TempDir(), "x.tar")
		}, errdefs.IsFailedPrecondition, false},
		{"stopped", func(t *testing.T, e *testEnv) (string, string) {
			podID, id := e.runCounter(t, containerConfig("c"))
			e.shims.get(e.svc.shimDir(podID)).exit(id, 0)
			waitState(t, e, id, runtimeapi.ContainerState_CONTAINER_EXITED)
			return id, filepath.Join(t.TempDir(), "x.tar")
		}, errdefs.IsFailedPrecondition, false},
		{"tty", func(t *testing.T, e *testEnv) (string, string) {
			cfg := containerConfig("c")
			cfg.Tty = true
			_, id := e.runCounter(t, cfg)
			return id, filepath.Join(t.TempDir(), "x.tar")
		}, errdefs.IsFailedPrecondition, false},
		{"unwritable location", func(t *testing.T, e *testEnv) (string, string) {
			_, id := e.runCounter(t, containerConfig("c"))
			return id, filepath.Join(t.TempDir(), "missing-dir", "x.tar")
		}, errdefs.IsInvalidArgument, false},
		{"relative location", func(t *testing.T, e *testEnv) (string, string) {
			_, id := e.runCounter(t, containerConfig("c"))
			return id, "x.tar"
		}, errdefs.IsInvalidArgument, false},
		{"dump fails", func(t *testing.T, e *testEnv) (string, string) {
			podID, id := e.runCounter(t, containerConfig("c"))
			e.shims.get(e.svc.shimDir(podID)).checkpointErr = errors.New("criu: Connected TCP socket")
			return id, filepath.Join(t.TempDir(), "x.tar")
		}, func(err error) bool { return err != nil }, true},
		{"criu unavailable", func(t *testing.T, e *testEnv) (string, string) {
			e.checkpoint = CheckpointSupport{Reason: "vdso: kernel too new"}
			e.svc.Close()
			e.svc = e.newService(t)
			_, id := e.runCounter(t, containerConfig("c"))
			return id, filepath.Join(t.TempDir(), "x.tar")
		}, errdefs.IsNotImplemented, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			id, loc := tt.setup(t, e)
			_, err := e.svc.CheckpointContainer(context.Background(), &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: loc})
			if err == nil || !tt.want(err) {
				t.Fatalf("err = %v", err)
			}
			if _, serr := os.Stat(loc); serr == nil {
				t.Error("an archive was written")
			}
			if filepath.IsAbs(loc) {
				assertNoEntries(t, filepath.Dir(loc))
			}
			assertNoEntries(t, e.svc.checkpointScratch())
			dumps := e.shims.dumps()
			if (dumps > 0) != tt.dumpsRun {
				t.Errorf("%d dumps ran", dumps)
			}
		})
	}
}

func TestRestoreFromCheckpointArchive(t *testing.T) {
	e := newTestEnv(t)
	loc, id := e.checkpointedCounter(t)
	// The archive outlives the agent: restore through a new service.
	e.svc.Close()
	e.svc = e.newService(t)

	pod := podConfig("restored")
	newPod := e.runPod(t, pod)
	cfg := containerConfig("counter")
	cfg.Image = &runtimeapi.ImageSpec{Image: loc}
	newID := e.createContainer(t, newPod, pod, cfg)

	sh := e.shims.get(e.svc.shimDir(newPod))
	req := sh.creates[len(sh.creates)-1]
	if req.RestoreImages == "" {
		t.Fatal("shim Create was not asked to restore")
	}
	if b, err := os.ReadFile(filepath.Join(req.RestoreImages, "pages-1.img")); err != nil || string(b) != "memory of "+id {
		t.Errorf("CRIU image for the restore = %q, %v", b, err)
	}
	c, err := e.svc.store.Containers.Get(newID)
	if err != nil {
		t.Fatal(err)
	}
	md := c.Metadata()
	if md.ImageName != testImage {
		t.Errorf("image = %q; want the checkpoint's base image", md.ImageName)
	}
	if b, err := os.ReadFile(filepath.Join(md.Rootfs, "count")); err != nil || string(b) != "41\n" {
		t.Errorf("restored rootfs file = %q, %v", b, err)
	}
	e.removePod(t, newPod)
	e.assertNothingLeft(t)
	assertNoEntries(t, filepath.Join(e.cfg.Root, "checkpoints"))
}

func TestRestoreRefusals(t *testing.T) {
	notArchive := filepath.Join(t.TempDir(), "plain.tar")
	if err := os.WriteFile(notArchive, []byte("not a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		image string
		tty   bool
		avail bool
		want  func(error) bool
	}{
		{"missing archive", filepath.Join(t.TempDir(), "none.tar"), false, true, errdefs.IsNotFound},
		{"not a checkpoint", notArchive, false, true, errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			pod := podConfig("r")
			podID := e.runPod(t, pod)
			cfg := containerConfig("c")
			cfg.Image = &runtimeapi.ImageSpec{Image: tt.image}
			cfg.Tty = tt.tty
			_, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
			if err == nil || !tt.want(err) {
				t.Fatalf("err = %v", err)
			}
			e.removePod(t, podID)
			e.assertNothingLeft(t)
		})
	}
}

func TestRestoreRefusedWithTTYOrWithoutCRIU(t *testing.T) {
	e := newTestEnv(t)
	loc, _ := e.checkpointedCounter(t)

	create := func() error {
		pod := podConfig("r")
		podID := e.runPod(t, pod)
		defer e.removePod(t, podID)
		cfg := containerConfig("c")
		cfg.Image = &runtimeapi.ImageSpec{Image: loc}
		cfg.Tty = true
		_, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{PodSandboxId: podID, Config: cfg, SandboxConfig: pod})
		return err
	}
	if err := create(); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("tty restore: err = %v; want failed precondition", err)
	}
	e.checkpoint = CheckpointSupport{Reason: "vdso: kernel too new"}
	e.svc.Close()
	e.svc = e.newService(t)
	if err := create(); !errdefs.IsNotImplemented(err) {
		t.Errorf("restore without CRIU: err = %v; want not implemented", err)
	}
	e.assertNothingLeft(t)
}
