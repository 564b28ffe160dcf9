package images

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/containerd/errdefs"
)

// requestLog records the paths a registry was asked for.
type requestLog struct {
	mu    sync.Mutex
	paths []string
}

func (l *requestLog) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.mu.Lock()
		l.paths = append(l.paths, r.URL.Path)
		l.mu.Unlock()
		h.ServeHTTP(w, r)
	})
}

// reset forgets the requests so far (a push reads too: it checks what exists).
func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.paths = nil
}

func (l *requestLog) manifestsByTag() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, p := range l.paths {
		if i := strings.Index(p, "/manifests/"); i >= 0 && !strings.HasPrefix(p[i+len("/manifests/"):], "sha256:") {
			out = append(out, p)
		}
	}
	return out
}

// TestPullOnlyMirror: containerd's hosts.toml capabilities: "pull" lets a mirror serve
// content by digest, "resolve" is needed to turn a tag into a digest. A pull-only mirror
// serves a by-digest pull; a tag is never resolved on it.
func TestPullOnlyMirror(t *testing.T) {
	onMirror := testImage(t, "pm", map[string]string{"m": "m"})
	onUpstream := testImage(t, "pu", map[string]string{"u": "u"})
	var mirrorLog requestLog
	mirror := testRegistry(t, mirrorLog.wrap)
	upstream := testRegistry(t, nil)
	// Only the mirror has onMirror; both have a v1 tag, for different images.
	push(t, mirror+"/lib/app:v1", onMirror)
	push(t, upstream+"/lib/app:v1", onUpstream)
	mirrorLog.reset()

	certs := t.TempDir()
	if err := os.MkdirAll(filepath.Join(certs, upstream), 0o755); err != nil {
		t.Fatal(err)
	}
	hosts := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n  capabilities = [\"pull\"]\n", upstream, mirror)
	if err := os.WriteFile(filepath.Join(certs, upstream, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		t.Fatal(err)
	}
	s := newService(t, func(o *Options) { o.CertsDir = certs })
	ctx := context.Background()

	byDigest := upstream + "/lib/app@" + digestOfImage(t, onMirror)
	img, err := s.Pull(ctx, byDigest, nil)
	if err != nil {
		t.Fatalf("digest pull through a pull-only mirror: %v", err)
	}
	if img.ID != idOf(t, onMirror) || len(img.RepoDigests) != 1 || img.RepoDigests[0] != byDigest {
		t.Errorf("digest pull = %s %v, want %s named %s", img.ID, img.RepoDigests, idOf(t, onMirror), byDigest)
	}
	// A tag resolves on the upstream only, though the mirror has one of that name.
	img, err = s.Pull(ctx, upstream+"/lib/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	if img.ID != idOf(t, onUpstream) {
		t.Errorf("tag pull got %s, want the upstream's %s", img.ID, idOf(t, onUpstream))
	}
	if got := mirrorLog.manifestsByTag(); len(got) != 0 {
		t.Errorf("tags resolved on the pull-only mirror: %v", got)
	}
	// A digest that neither has is NotFound, after the mirror and the upstream were asked.
	missing := upstream + "/lib/app@sha256:" + strings.Repeat("0", 64)
	if _, err := s.Pull(ctx, missing, nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing digest: %v, want NotFound", err)
	}
}
