package checkpoint

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

// podDir writes a pod checkpoint of the named containers (empty archives) and returns it.
func podDir(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	must(t, os.Mkdir(filepath.Join(dir, PodContainersDir), 0o700))
	m := PodManifest{SandboxID: "p1"}
	for _, n := range names {
		rel, err := ContainerArchive(n)
		must(t, err)
		must(t, os.WriteFile(filepath.Join(dir, rel), nil, 0o600))
		m.Containers = append(m.Containers, PodContainer{Name: n, ID: n + "-id", Archive: rel})
	}
	must(t, WritePodManifest(dir, m))
	return dir
}

func TestPodManifestRoundTrip(t *testing.T) {
	dir := podDir(t, "a", "b")
	m, err := LoadPod(dir)
	must(t, err)
	if m.Version != PodVersion || m.SandboxID != "p1" || len(m.Containers) != 2 || m.Containers[1].ArchivePath(dir) != filepath.Join(dir, "containers", "b.tar") {
		t.Errorf("manifest = %+v", m)
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 2 {
		t.Errorf("entries = %v; want pod.json and containers/ only", ents)
	}
}

func TestLoadPodRefusals(t *testing.T) {
	tests := []struct {
		name     string
		dir      func(t *testing.T) string
		notFound bool
	}{
		{"missing directory", func(t *testing.T) string { return filepath.Join(t.TempDir(), "none") }, true},
		{"no manifest", func(t *testing.T) string { return t.TempDir() }, false},
		{"relative", func(t *testing.T) string { return "ckpt" }, false},
		{"archive missing", func(t *testing.T) string {
			dir := podDir(t, "a")
			must(t, os.Remove(filepath.Join(dir, "containers", "a.tar")))
			return dir
		}, false},
		{"newer version", func(t *testing.T) string {
			dir := podDir(t, "a")
			must(t, os.WriteFile(filepath.Join(dir, PodManifestFile), []byte(`{"berthPodVersion": 99, "containers": [{"name": "a", "archive": "containers/a.tar"}]}`), 0o600))
			return dir
		}, false},
		{"escaping archive path", func(t *testing.T) string {
			dir := podDir(t, "a")
			must(t, os.WriteFile(filepath.Join(dir, PodManifestFile), []byte(`{"containers": [{"name": "a", "archive": "../../etc/passwd"}]}`), 0o600))
			return dir
		}, false},
		{"duplicate name", func(t *testing.T) string {
			dir := podDir(t, "a")
			must(t, os.WriteFile(filepath.Join(dir, PodManifestFile), []byte(`{"containers": [{"name": "a", "archive": "containers/a.tar"}, {"name": "a", "archive": "containers/a.tar"}]}`), 0o600))
			return dir
		}, false},
		{"no containers", func(t *testing.T) string { return podDir(t) }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadPod(tt.dir(t))
			if tt.notFound && !errdefs.IsNotFound(err) || !tt.notFound && !errdefs.IsInvalidArgument(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
}

func TestCheckPodDir(t *testing.T) {
	if err := CheckPodDir(t.TempDir()); err != nil {
		t.Errorf("empty directory refused: %v", err)
	}
	full := podDir(t, "a")
	for _, dir := range []string{"", "rel", filepath.Join(t.TempDir(), "none"), full, filepath.Join(full, PodManifestFile)} {
		if err := CheckPodDir(dir); !errdefs.IsInvalidArgument(err) {
			t.Errorf("CheckPodDir(%q) = %v; want invalid argument", dir, err)
		}
	}
	if _, err := ContainerArchive("../x"); !errdefs.IsInvalidArgument(err) {
		t.Errorf("ContainerArchive(../x) = %v", err)
	}
}

// A checkpoint image's unpacked layer is an extracted archive: ExtractLayers reads it back.
func TestExtractLayers(t *testing.T) {
	loc := filepath.Join(t.TempDir(), "ckpt.tar")
	must(t, Write(context.Background(), loc, testContents(t)))
	layer := t.TempDir()
	_, err := Extract(context.Background(), loc, layer)
	must(t, err)
	dest := t.TempDir()
	c, err := ExtractLayers(context.Background(), []string{layer}, dest)
	must(t, err)
	if c.Config.Name != "counter" || c.ImagesDir != filepath.Join(dest, ImagesDir) {
		t.Errorf("contents = %+v", c)
	}
	if b, err := os.ReadFile(filepath.Join(dest, ImagesDir, "sub", "x.img")); err != nil || string(b) != "x" {
		t.Errorf("CRIU image = %q, %v", b, err)
	}
	must(t, os.Symlink("/etc/passwd", filepath.Join(layer, "link")))
	if _, err := ExtractLayers(context.Background(), []string{layer}, t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("a layer with a symlink: err = %v; want invalid argument", err)
	}
	if _, err := ExtractLayers(context.Background(), []string{t.TempDir()}, t.TempDir()); !errdefs.IsInvalidArgument(err) {
		t.Errorf("an image that is no checkpoint: err = %v; want invalid argument", err)
	}
}
