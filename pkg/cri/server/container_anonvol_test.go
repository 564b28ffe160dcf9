package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

func TestAnonymousVolumePaths(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/claimed/", HostPath: "/h"}}}
	got := anonymousVolumePaths(cfg, []string{"/data", "/claimed", "rel", "/", "/data/", "/var/lib/x"})
	want := []string{"/data", "/rel", "/var/lib/x"}
	if !slices.Equal(got, want) {
		t.Errorf("anonymousVolumePaths = %v, want %v (CRI mount wins, root skipped, duplicates merged)", got, want)
	}
}

// TestFillVolumeCopiesImageContent: the volume starts as a copy of the image's directory with
// owners, modes, links and special files; a path resolved through a symlink stays in the root.
func TestFillVolumeCopiesImageContent(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root (chown, mknod)")
	}
	rootfs := t.TempDir()
	data := filepath.Join(rootfs, "data")
	mustDo(t, os.MkdirAll(filepath.Join(data, "sub"), 0o750))
	mustDo(t, os.WriteFile(filepath.Join(data, "file"), []byte("from image"), 0o640))
	mustDo(t, os.Chown(filepath.Join(data, "file"), 1000, 1001))
	mustDo(t, os.Chmod(filepath.Join(data, "sub"), os.ModeSetgid|0o751))
	mustDo(t, os.Link(filepath.Join(data, "file"), filepath.Join(data, "sub", "hardlink")))
	mustDo(t, os.Symlink("../file", filepath.Join(data, "sub", "link")))
	mustDo(t, syscall.Mkfifo(filepath.Join(data, "fifo"), 0o600))
	// /etc-escape is a symlink out of the root: resolved inside it, it names the root's /etc.
	mustDo(t, os.Symlink("/etc", filepath.Join(rootfs, "escape")))

	vol := filepath.Join(t.TempDir(), "volumes", "0")
	mustDo(t, fillVolume(rootfs, "/data", vol))
	if b, err := os.ReadFile(filepath.Join(vol, "file")); err != nil || string(b) != "from image" {
		t.Errorf("file = %q, %v", b, err)
	}
	checkOwnerMode(t, filepath.Join(vol, "file"), 1000, 1001, 0o640)
	checkOwnerMode(t, filepath.Join(vol, "sub"), 0, 0, os.ModeDir|os.ModeSetgid|0o751)
	checkOwnerMode(t, vol, 0, 0, os.ModeDir|0o750)
	a, _ := os.Stat(filepath.Join(vol, "file"))
	b, _ := os.Stat(filepath.Join(vol, "sub", "hardlink"))
	if !os.SameFile(a, b) {
		t.Error("hard link copied as a separate file")
	}
	if l, err := os.Readlink(filepath.Join(vol, "sub", "link")); err != nil || l != "../file" {
		t.Errorf("symlink = %q, %v", l, err)
	}
	if fi, err := os.Lstat(filepath.Join(vol, "fifo")); err != nil || fi.Mode()&os.ModeNamedPipe == 0 {
		t.Errorf("fifo = %v, %v", fi, err)
	}

	empty := filepath.Join(t.TempDir(), "volumes", "1")
	mustDo(t, fillVolume(rootfs, "/escape", empty))
	if entries, err := os.ReadDir(empty); err != nil || len(entries) != 0 {
		t.Errorf("a symlink out of the root gave %v, %v; want an empty volume (the root has no /etc)", entries, err)
	}

	err := fillVolume(rootfs, "/data/file", filepath.Join(t.TempDir(), "volumes", "2"))
	if !errdefs.IsInvalidArgument(err) {
		t.Errorf("volume over a file: err = %v, want InvalidArgument", err)
	}
}

// TestCreateContainerAnonymousVolumes: the image's declared volumes get recorded directories
// bound into the container, a CRI mount at the same path wins, and removal cleans them up.
func TestCreateContainerAnonymousVolumes(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	img := e.images.images[testImage]
	img.Config.Volumes = []string{"/data", "/claimed"}
	e.images.images[testImage] = img
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	cfg := containerConfig("app")
	cfg.Mounts = []*runtimeapi.Mount{{ContainerPath: "/claimed", HostPath: t.TempDir()}}
	id := e.createContainer(t, podID, pod, cfg)

	c, err := e.svc.store.Containers.Get(id)
	mustDo(t, err)
	md := c.Metadata()
	dir := md.Volumes["/data"]
	if len(md.Volumes) != 1 || dir != filepath.Join(md.LayerDir, "volumes", "0") {
		t.Fatalf("volumes = %v, want /data only, under the layer dir", md.Volumes)
	}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		t.Fatalf("volume dir: %v", err)
	}
	rs, err := e.svc.store.Resources()
	mustDo(t, err)
	if !slices.ContainsFunc(rs, func(r store.Resource) bool { return r.Kind == store.KindDir && r.Path == dir && r.Owner == id }) {
		t.Errorf("volume dir %s not in the ledger: %+v", dir, rs)
	}

	_, err = e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id})
	mustDo(t, err)
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume dir after removal: %v", err)
	}
}

func checkOwnerMode(t *testing.T, p string, uid, gid uint32, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != uid || st.Gid != gid || fi.Mode() != mode {
		t.Errorf("%s: %d:%d %v, want %d:%d %v", p, st.Uid, st.Gid, fi.Mode(), uid, gid, mode)
	}
}

func mustDo(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
