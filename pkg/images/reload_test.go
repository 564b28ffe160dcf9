package images

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

// TestReload: pinned images and the registry host config directory change without a restart;
// a bad pinned name fails the reload and leaves the settings in effect as they were.
func TestReload(t *testing.T) {
	img := testImage(t, "rl", map[string]string{"r": "r"})
	var mirrorLog requestLog
	mirror := testRegistry(t, mirrorLog.wrap)
	upstream := testRegistry(t, nil)
	push(t, mirror+"/lib/app:v1", img)
	push(t, upstream+"/lib/app:v1", img)
	mirrorLog.reset()
	certs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(certs, upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n", upstream, mirror)
	if err := os.WriteFile(filepath.Join(certs, upstream, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newService(t)
	ctx := context.Background()
	ref := upstream + "/lib/app:v1"
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if got := mirrorLog.manifestsByTag(); len(got) != 0 {
		t.Fatalf("mirror asked before it was configured: %v", got)
	}
	if got, err := s.Get(ctx, ref); err != nil || got.Pinned {
		t.Fatalf("before reload: pinned %v, %v", got.Pinned, err)
	}

	if err := s.Reload(Reloadable{CertsDir: certs, Pinned: []string{ref}}); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Get(ctx, ref); err != nil || !got.Pinned {
		t.Fatalf("after reload: pinned %v, %v", got.Pinned, err)
	}
	if _, err := s.Pull(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if got := mirrorLog.manifestsByTag(); len(got) == 0 {
		t.Fatal("pull after reload did not use the mirror of the new certs_dir")
	}

	if err := s.Reload(Reloadable{Pinned: []string{"has space:x"}}); err == nil {
		t.Fatal("reload with a malformed pinned name succeeded")
	}
	if got, err := s.Get(ctx, ref); err != nil || !got.Pinned {
		t.Fatalf("a failed reload changed the pinned set: pinned %v, %v", got.Pinned, err)
	}
}
