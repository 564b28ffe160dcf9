package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/checkpoint"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// counterPod runs a pod with two started containers, a and b, whose writable layers each
// hold a count file.
func (e *testEnv) counterPod(t *testing.T) (pod *runtimeapi.PodSandboxConfig, podID string, ids []string) {
	t.Helper()
	pod = podConfig("pair")
	podID = e.runPod(t, pod)
	for _, name := range []string{"a", "b"} {
		id := e.createContainer(t, podID, pod, containerConfig(name))
		if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatalf("StartContainer: %v", err)
		}
		if err := os.WriteFile(filepath.Join(e.svc.layerDir(id), "upper", "count"), []byte(name+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return pod, podID, ids
}

func (e *testEnv) checkpointPod(podID, out string, ids ...string) error {
	_, err := e.svc.CheckpointPod(context.Background(), &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out, ContainerIds: ids})
	return err
}

func restoreRequest(dir string, names ...string) *runtimeapi.RestorePodRequest {
	req := &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: podConfig("restored")}
	for _, n := range names {
		req.ContainerConfigs = append(req.ContainerConfigs, containerConfig(n))
	}
	return req
}

func TestCheckpointPodAndRestore(t *testing.T) {
	e := newTestEnv(t)
	_, podID, ids := e.counterPod(t)
	sh := e.shims.get(e.svc.shimDir(podID))
	var frozenAtDump []int
	sh.onCheckpoint = func(ShimCheckpointRequest) { frozenAtDump = append(frozenAtDump, e.cg.frozenCount()) }
	out := t.TempDir()

	if err := e.checkpointPod(podID, out, ids...); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	// One consistent cut: both containers frozen before the first dump, until the last.
	if !slices.Equal(frozenAtDump, []int{2, 2}) {
		t.Errorf("frozen containers at each dump = %v; want [2 2]", frozenAtDump)
	}
	if n := e.cg.frozenCount(); n != 0 {
		t.Errorf("%d containers left frozen", n)
	}
	for _, id := range ids {
		if st, _ := e.svc.store.Containers.Get(id); st.Status().State != "running" {
			t.Errorf("container %s is %s after the checkpoint", id, st.Status().State)
		}
	}
	m, err := checkpoint.LoadPod(out)
	if err != nil {
		t.Fatalf("LoadPod: %v", err)
	}
	if m.SandboxID != podID || len(m.Containers) != 2 || m.Containers[0].Name != "a" || m.Containers[1].ID != ids[1] {
		t.Errorf("manifest = %+v", m)
	}
	assertNoEntries(t, e.svc.checkpointScratch())
	e.removePod(t, podID)

	// The checkpoint outlives the agent.
	e.svc.Close()
	e.svc = e.newService(t)
	resp, err := e.svc.RestorePod(context.Background(), restoreRequest(out, "b", "a"))
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	if len(resp.RestoredContainers) != 2 || resp.RestoredContainers[0].Name != "b" || resp.RestoredContainers[1].Name != "a" {
		t.Fatalf("restored = %v", resp.RestoredContainers)
	}
	sh = e.shims.get(e.svc.shimDir(resp.PodSandboxId))
	for i, rc := range resp.RestoredContainers {
		c, err := e.svc.store.Containers.Get(rc.ContainerId)
		if err != nil {
			t.Fatal(err)
		}
		if st := c.Status().State; st != "created" {
			t.Errorf("%s is %s; want created", rc.Name, st)
		}
		if b, err := os.ReadFile(filepath.Join(c.Metadata().Rootfs, "count")); err != nil || string(b) != rc.Name+"\n" {
			t.Errorf("%s: restored rootfs file = %q, %v", rc.Name, b, err)
		}
		if sh.creates[i].RestoreImages == "" {
			t.Errorf("%s: shim Create was not asked to restore", rc.Name)
		}
		if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: rc.ContainerId}); err != nil {
			t.Errorf("StartContainer %s: %v", rc.Name, err)
		}
	}
	if b, err := os.ReadFile(filepath.Join(out, checkpoint.PodManifestFile)); err != nil || len(b) == 0 {
		t.Errorf("the restore touched the checkpoint: %v", err)
	}
	e.removePod(t, resp.PodSandboxId)
	e.assertNothingLeft(t)
}

func TestCheckpointPodRefusals(t *testing.T) {
	tests := []struct {
		name string
		// setup returns the request's pod, container ids and output directory.
		setup func(t *testing.T, e *testEnv) (podID string, ids []string, out string)
		opts  map[string]string
		want  func(error) bool
	}{
		{"unknown pod", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, _, ids := e.counterPod(t)
			return "nosuchpod", ids, t.TempDir()
		}, nil, errdefs.IsNotFound},
		{"no container ids", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, _ := e.counterPod(t)
			return podID, nil, t.TempDir()
		}, nil, errdefs.IsInvalidArgument},
		{"duplicate id", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			return podID, []string{ids[0], ids[1], ids[0]}, t.TempDir()
		}, nil, errdefs.IsInvalidArgument},
		{"a running container left out", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			return podID, ids[:1], t.TempDir()
		}, nil, errdefs.IsInvalidArgument},
		{"unknown container", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			return podID, append(ids, "nosuchcontainer"), t.TempDir()
		}, nil, errdefs.IsNotFound},
		{"container of another pod", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			other := podConfig("other")
			otherID := e.runPod(t, other)
			foreign := e.createContainer(t, otherID, other, containerConfig("x"))
			return podID, append(ids, foreign), t.TempDir()
		}, nil, errdefs.IsInvalidArgument},
		{"container not running", func(t *testing.T, e *testEnv) (string, []string, string) {
			pod, podID, ids := e.counterPod(t)
			created := e.createContainer(t, podID, pod, containerConfig("c"))
			return podID, append(ids, created), t.TempDir()
		}, nil, errdefs.IsFailedPrecondition},
		{"output dir not empty", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			out := t.TempDir()
			if err := os.WriteFile(filepath.Join(out, "mine"), nil, 0o600); err != nil {
				t.Fatal(err)
			}
			return podID, ids, out
		}, nil, errdefs.IsInvalidArgument},
		{"output dir missing", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			return podID, ids, filepath.Join(t.TempDir(), "none")
		}, nil, errdefs.IsInvalidArgument},
		{"relative output dir", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			return podID, ids, "out"
		}, nil, errdefs.IsInvalidArgument},
		{"unknown option", func(t *testing.T, e *testEnv) (string, []string, string) {
			_, podID, ids := e.counterPod(t)
			return podID, ids, t.TempDir()
		}, map[string]string{"tcp-established": "true"}, errdefs.IsInvalidArgument},
		{"tty container", func(t *testing.T, e *testEnv) (string, []string, string) {
			pod, podID, ids := e.counterPod(t)
			cfg := containerConfig("tty")
			cfg.Tty = true
			id := e.createContainer(t, podID, pod, cfg)
			if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
				t.Fatal(err)
			}
			return podID, append(ids, id), t.TempDir()
		}, nil, errdefs.IsFailedPrecondition},
		{"criu unavailable", func(t *testing.T, e *testEnv) (string, []string, string) {
			e.checkpoint = CheckpointSupport{Reason: "vdso: kernel too new"}
			e.svc.Close()
			e.svc = e.newService(t)
			_, podID, ids := e.counterPod(t)
			return podID, ids, t.TempDir()
		}, nil, errdefs.IsNotImplemented},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			podID, ids, out := tt.setup(t, e)
			_, err := e.svc.CheckpointPod(context.Background(), &runtimeapi.CheckpointPodRequest{PodSandboxId: podID, OutputPath: out, ContainerIds: ids, Options: tt.opts})
			if err == nil || !tt.want(err) {
				t.Fatalf("err = %v", err)
			}
			if n := e.shims.dumps(); n != 0 {
				t.Errorf("%d dumps ran for a refused request", n)
			}
			if n := e.cg.frozenCount(); n != 0 {
				t.Errorf("%d containers left frozen", n)
			}
			if _, err := os.Stat(filepath.Join(out, checkpoint.PodManifestFile)); err == nil {
				t.Error("a manifest was written")
			}
		})
	}
}

// A failure part way (the second dump, or a freeze) leaves every container running and
// thawed and the output directory empty.
func TestCheckpointPodFailureResumesAndCleans(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(e *testEnv, podID string, ids []string)
	}{
		{"second dump fails", func(e *testEnv, podID string, ids []string) {
			sh := e.shims.get(e.svc.shimDir(podID))
			sh.onCheckpoint = func(ShimCheckpointRequest) {
				if len(sh.checkpoints) == 2 {
					sh.checkpointErr = errors.New("criu: Connected TCP socket")
				}
			}
		}},
		{"second freeze fails", func(e *testEnv, podID string, ids []string) {
			c, _ := e.svc.store.Containers.Get(ids[1])
			e.cg.freezeErr = map[string]error{c.Metadata().Cgroup: errors.New("freezer: device busy")}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			_, podID, ids := e.counterPod(t)
			tt.breakIt(e, podID, ids)
			out := t.TempDir()
			if err := e.checkpointPod(podID, out, ids...); err == nil {
				t.Fatal("CheckpointPod succeeded")
			}
			if n := e.cg.frozenCount(); n != 0 {
				t.Errorf("%d containers left frozen", n)
			}
			assertNoEntries(t, out)
			assertNoEntries(t, e.svc.checkpointScratch())
			for _, id := range ids {
				if c, _ := e.svc.store.Containers.Get(id); c.Status().State != "running" {
					t.Errorf("container %s is %s", id, c.Status().State)
				}
			}
			e.removePod(t, podID)
			e.assertNothingLeft(t)
		})
	}
}

// checkpointedPair writes a pod checkpoint of a and b and removes the pod.
func checkpointedPair(t *testing.T, e *testEnv) string {
	t.Helper()
	_, podID, ids := e.counterPod(t)
	out := t.TempDir()
	if err := e.checkpointPod(podID, out, ids...); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	e.removePod(t, podID)
	return out
}

func TestRestorePodRefusals(t *testing.T) {
	tests := []struct {
		name   string
		change func(t *testing.T, req *runtimeapi.RestorePodRequest)
		want   func(error) bool
	}{
		{"missing name", func(t *testing.T, r *runtimeapi.RestorePodRequest) { r.ContainerConfigs = r.ContainerConfigs[:1] }, errdefs.IsInvalidArgument},
		{"extra name", func(t *testing.T, r *runtimeapi.RestorePodRequest) {
			r.ContainerConfigs = append(r.ContainerConfigs, containerConfig("c"))
		}, errdefs.IsInvalidArgument},
		{"duplicate name", func(t *testing.T, r *runtimeapi.RestorePodRequest) {
			r.ContainerConfigs = append(r.ContainerConfigs, containerConfig("a"))
		}, errdefs.IsInvalidArgument},
		{"no configs", func(t *testing.T, r *runtimeapi.RestorePodRequest) { r.ContainerConfigs = nil }, errdefs.IsInvalidArgument},
		{"no pod config", func(t *testing.T, r *runtimeapi.RestorePodRequest) { r.Config = nil }, errdefs.IsInvalidArgument},
		{"unknown handler", func(t *testing.T, r *runtimeapi.RestorePodRequest) { r.RuntimeHandler = "kata" }, errdefs.IsNotFound},
		{"unknown option", func(t *testing.T, r *runtimeapi.RestorePodRequest) { r.Options = map[string]string{"x": "y"} }, errdefs.IsInvalidArgument},
		{"other command", func(t *testing.T, r *runtimeapi.RestorePodRequest) {
			r.ContainerConfigs[0].Command = []string{"sleep", "5"}
		}, errdefs.IsInvalidArgument},
		{"other image", func(t *testing.T, r *runtimeapi.RestorePodRequest) {
			r.ContainerConfigs[1].Image = &runtimeapi.ImageSpec{Image: "docker.io/library/alpine:latest"}
		}, errdefs.IsInvalidArgument},
		{"tty", func(t *testing.T, r *runtimeapi.RestorePodRequest) { r.ContainerConfigs[1].Tty = true }, errdefs.IsFailedPrecondition},
		{"not a checkpoint", func(t *testing.T, r *runtimeapi.RestorePodRequest) { r.CheckpointPath = t.TempDir() }, errdefs.IsInvalidArgument},
		{"missing checkpoint", func(t *testing.T, r *runtimeapi.RestorePodRequest) {
			r.CheckpointPath = filepath.Join(t.TempDir(), "none")
		}, errdefs.IsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			req := restoreRequest(checkpointedPair(t, e), "a", "b")
			tt.change(t, req)
			if _, err := e.svc.RestorePod(context.Background(), req); err == nil || !tt.want(err) {
				t.Fatalf("err = %v", err)
			}
			e.assertNothingLeft(t)
		})
	}
}

// A container that fails to create after the sandbox and the first container were made
// takes them all away.
func TestRestorePodRollback(t *testing.T) {
	e := newTestEnv(t)
	dir := checkpointedPair(t, e)
	// b's archive is damaged past what LoadPod checks (it exists): the create reads it.
	if err := os.WriteFile(filepath.Join(dir, checkpoint.PodContainersDir, "b.tar"), []byte("damaged"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := e.svc.RestorePod(context.Background(), restoreRequest(dir, "a", "b"))
	if !errdefs.IsInvalidArgument(err) {
		t.Fatalf("err = %v; want invalid argument", err)
	}
	// The source pod's shim, then the restored pod's, which created a before b failed.
	if n := len(e.shims.started); n != 2 {
		t.Fatalf("%d shims started; want 2 (the rollback went untested)", n)
	}
	if sh := e.shims.get(e.shims.started[1].Dir); len(sh.creates) != 1 || sh.creates[0].RestoreImages == "" {
		t.Fatalf("restored pod's creates = %+v; want a's restore", sh.creates)
	}
	e.assertNothingLeft(t)
	assertNoEntries(t, filepath.Join(e.cfg.Root, "checkpoints"))
}

func TestPodCheckpointRefusedWithoutCRIU(t *testing.T) {
	e := newTestEnv(t)
	e.checkpoint = CheckpointSupport{Reason: "vdso: kernel too new"}
	e.svc.Close()
	e.svc = e.newService(t)
	if _, err := e.svc.CheckpointPod(context.Background(), &runtimeapi.CheckpointPodRequest{PodSandboxId: "x"}); !errdefs.IsNotImplemented(err) {
		t.Errorf("CheckpointPod: err = %v", err)
	}
	if _, err := e.svc.RestorePod(context.Background(), &runtimeapi.RestorePodRequest{CheckpointPath: "/x"}); !errdefs.IsNotImplemented(err) {
		t.Errorf("RestorePod: err = %v", err)
	}
}

func TestRestoreFromCheckpointImage(t *testing.T) {
	e := newTestEnv(t)
	loc, _ := e.checkpointedCounter(t)
	// The image store's unpacked layer of a checkpoint image is the archive's files.
	layer := t.TempDir()
	if _, err := checkpoint.Extract(context.Background(), loc, layer); err != nil {
		t.Fatal(err)
	}
	const ref, imgID = "localhost/checkpoints/counter:1", "sha256:00000000000000000000000000000000000000000000000000000000000000c1"
	e.images.images[ref] = ImageInfo{ID: imgID, Annotations: map[string]string{checkpoint.ImageAnnotation: "counter"}}
	e.images.layers = map[string][]string{imgID: {layer}}

	pod := podConfig("restored")
	newPod := e.runPod(t, pod)
	cfg := containerConfig("counter")
	cfg.Image = &runtimeapi.ImageSpec{Image: ref}
	newID := e.createContainer(t, newPod, pod, cfg)
	sh := e.shims.get(e.svc.shimDir(newPod))
	if req := sh.creates[len(sh.creates)-1]; req.RestoreImages == "" {
		t.Fatal("shim Create was not asked to restore")
	}
	c, err := e.svc.store.Containers.Get(newID)
	if err != nil {
		t.Fatal(err)
	}
	if md := c.Metadata(); md.ImageName != testImage {
		t.Errorf("image = %q; want the checkpoint's base image", md.ImageName)
	}
	if b, err := os.ReadFile(filepath.Join(c.Metadata().Rootfs, "count")); err != nil || string(b) != "41\n" {
		t.Errorf("restored rootfs file = %q, %v", b, err)
	}
	e.removePod(t, newPod)
	e.assertNothingLeft(t)
}

// An agent that exits in the middle of a pod checkpoint leaves its containers frozen and the
// scratch's record of them: the next start thaws them.
func TestRecoverThawsAnInterruptedPodCheckpoint(t *testing.T) {
	e := newTestEnv(t)
	_, podID, ids := e.counterPod(t)
	scratch, err := e.svc.newCheckpointScratch(podID)
	if err != nil {
		t.Fatal(err)
	}
	var ctrs []*store.Container
	for _, id := range ids {
		c, err := e.svc.store.Containers.Get(id)
		if err != nil {
			t.Fatal(err)
		}
		ctrs = append(ctrs, c)
	}
	if err := writeFrozenRecord(scratch, ctrs); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.freezeAll(ctrs); err != nil {
		t.Fatal(err)
	}
	e.svc.Close()
	e.svc = e.newService(t)
	if n := e.cg.frozenCount(); n != 0 {
		t.Errorf("%d containers still frozen after the restart", n)
	}
	assertNoEntries(t, e.svc.checkpointScratch())
	e.removePod(t, podID)
	e.assertNothingLeft(t)
}
