package checkpoint

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func testContents(t *testing.T) Contents {
	t.Helper()
	images := t.TempDir()
	must(t, os.WriteFile(filepath.Join(images, "pages-1.img"), []byte("memory"), 0o600))
	must(t, os.Mkdir(filepath.Join(images, "sub"), 0o700))
	must(t, os.WriteFile(filepath.Join(images, "sub", "x.img"), []byte("x"), 0o600))
	return Contents{
		Config: Config{ID: "c1", Name: "counter", RootfsImageName: "busybox:latest",
			CreatedTime: time.Unix(100, 0).UTC(), Labels: map[string]string{"a": "b"}},
		Spec:      &specs.Spec{Version: "1.0.2", Process: &specs.Process{Args: []string{"sh"}}, Root: &specs.Root{Path: "rootfs"}},
		Status:    Status{State: "running", Pid: 42},
		ImagesDir: images,
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func TestWriteExtractRoundTrip(t *testing.T) {
	c := testContents(t)
	upper := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(upper, "data", "opaque"), 0o750))
	must(t, os.WriteFile(filepath.Join(upper, "data", "count"), []byte("17\n"), 0o640))
	must(t, os.Symlink("count", filepath.Join(upper, "data", "link")))
	must(t, unix.Mknod(filepath.Join(upper, "data", "gone"), unix.S_IFCHR, 0))
	must(t, unix.Lsetxattr(filepath.Join(upper, "data", "opaque"), opaqueXattr, []byte("y"), 0))
	c.UpperDir = upper

	loc := filepath.Join(t.TempDir(), "ckpt.tar")
	must(t, Write(context.Background(), loc, c))
	if ok, err := IsArchive(loc); err != nil || !ok {
		t.Fatalf("IsArchive = %v, %v; want true", ok, err)
	}

	dest := t.TempDir()
	got, err := Extract(context.Background(), loc, dest)
	must(t, err)
	if got.Config.ID != "c1" || got.Config.Name != "counter" || got.Config.Labels["a"] != "b" || got.Config.Version != Version {
		t.Errorf("config = %+v", got.Config)
	}
	if got.Spec.Process.Args[0] != "sh" || got.Status.Pid != 42 {
		t.Errorf("spec or status lost: %+v %+v", got.Spec.Process, got.Status)
	}
	if b, err := os.ReadFile(filepath.Join(got.ImagesDir, "sub", "x.img")); err != nil || string(b) != "x" {
		t.Errorf("CRIU image = %q, %v", b, err)
	}

	// The new rootfs stands in for the image: the diff must remove what the old layer
	// deleted and hide what its opaque directory hid.
	rootfs := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(rootfs, "data", "opaque"), 0o755))
	must(t, os.WriteFile(filepath.Join(rootfs, "data", "gone"), []byte("image file"), 0o644))
	must(t, os.WriteFile(filepath.Join(rootfs, "data", "opaque", "hidden"), []byte("image file"), 0o644))
	must(t, ApplyRootfsDiff(context.Background(), dest, rootfs))
	if b, err := os.ReadFile(filepath.Join(rootfs, "data", "count")); err != nil || string(b) != "17\n" {
		t.Errorf("count = %q, %v", b, err)
	}
	if info, err := os.Stat(filepath.Join(rootfs, "data", "count")); err != nil || info.Mode().Perm() != 0o640 {
		t.Errorf("count mode = %v, %v", info.Mode(), err)
	}
	if target, err := os.Readlink(filepath.Join(rootfs, "data", "link")); err != nil || target != "count" {
		t.Errorf("link = %q, %v", target, err)
	}
	for _, p := range []string{"data/gone", "data/opaque/hidden"} {
		if _, err := os.Lstat(filepath.Join(rootfs, p)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still there: %v", p, err)
		}
	}
	if info, err := os.Stat(filepath.Join(rootfs, "data", "opaque")); err != nil || !info.IsDir() {
		t.Errorf("opaque dir missing: %v", err)
	}
}

func TestWriteFailuresLeaveNothing(t *testing.T) {
	t.Run("missing directory", func(t *testing.T) {
		loc := filepath.Join(t.TempDir(), "nodir", "ckpt.tar")
		err := Write(context.Background(), loc, testContents(t))
		if !errdefs.IsInvalidArgument(err) {
			t.Fatalf("err = %v; want invalid argument", err)
		}
	})
	t.Run("CheckLocation", func(t *testing.T) {
		dir := t.TempDir()
		if err := CheckLocation(filepath.Join(dir, "ckpt.tar")); err != nil {
			t.Fatalf("writable location refused: %v", err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("probe left files: %v", ents)
		}
		if err := CheckLocation(filepath.Join(dir, "nodir", "ckpt.tar")); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("err = %v; want invalid argument", err)
		}
	})
	t.Run("relative location", func(t *testing.T) {
		if err := Write(context.Background(), "ckpt.tar", testContents(t)); !errdefs.IsInvalidArgument(err) {
			t.Fatalf("err = %v; want invalid argument", err)
		}
	})
	t.Run("context ended", func(t *testing.T) {
		dir := t.TempDir()
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		err := Write(ctx, filepath.Join(dir, "ckpt.tar"), testContents(t))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v; want context.Canceled", err)
		}
		if ents, _ := os.ReadDir(dir); len(ents) != 0 {
			t.Fatalf("partial files left: %v", ents)
		}
	})
}

func writeTar(t *testing.T, entries map[string]string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "a.tar")
	f, err := os.Create(p)
	must(t, err)
	tw := tar.NewWriter(f)
	for name, body := range entries {
		must(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(body)), Typeflag: tar.TypeReg}))
		_, err := tw.Write([]byte(body))
		must(t, err)
	}
	must(t, tw.Close())
	must(t, f.Close())
	return p
}

func TestExtractRefusesNonCheckpoints(t *testing.T) {
	notTar := filepath.Join(t.TempDir(), "x")
	must(t, os.WriteFile(notTar, []byte("this is not a tar archive at all, just some words to fill a block"), 0o600))
	tests := []struct {
		name string
		path string
	}{
		{"not a tar", notTar},
		{"tar without metadata", writeTar(t, map[string]string{"etc/passwd": "root"})},
		{"no images dir", writeTar(t, map[string]string{ConfigDumpFile: "{}", SpecDumpFile: `{"process":{},"root":{}}`})},
		{"escaping path", writeTar(t, map[string]string{"../../escape": "x", ConfigDumpFile: "{}"})},
		{"bad config", writeTar(t, map[string]string{ImagesDir + "/a.img": "", ConfigDumpFile: "{", SpecDumpFile: "{}"})},
		{"newer version", writeTar(t, map[string]string{ImagesDir + "/a.img": "", ConfigDumpFile: `{"berthVersion":99}`, SpecDumpFile: `{"process":{},"root":{}}`})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			parent := t.TempDir()
			dest := filepath.Join(parent, "dest")
			must(t, os.Mkdir(dest, 0o700))
			_, err := Extract(context.Background(), tt.path, dest)
			if err == nil {
				t.Fatal("Extract succeeded")
			}
			if tt.name != "escaping path" && !errdefs.IsInvalidArgument(err) {
				t.Errorf("err = %v; want invalid argument", err)
			}
			if _, err := os.Stat(filepath.Join(parent, "escape")); err == nil {
				t.Error("an entry was written outside the destination")
			}
			// IsArchive reads headers only: it passes archives whose metadata is bad.
			if ok, _ := IsArchive(tt.path); ok != (tt.name == "bad config" || tt.name == "newer version") {
				t.Errorf("IsArchive = %v", ok)
			}
		})
	}
}

func TestExtractMissingArchive(t *testing.T) {
	_, err := Extract(context.Background(), filepath.Join(t.TempDir(), "none.tar"), t.TempDir())
	if !errdefs.IsNotFound(err) {
		t.Fatalf("err = %v; want not found", err)
	}
}
