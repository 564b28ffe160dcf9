package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/registry"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

// testRegistry is ggcr's in-memory registry on 127.0.0.1, optionally behind a wrapper.
func testRegistry(t *testing.T, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	var h http.Handler = registry.New(registry.Logger(log.New(io.Discard, "", 0)))
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

// layerOf builds a gzip layer from path -> content; a trailing "/" makes a directory.
func layerOf(t testing.TB, files map[string]string) v1.Layer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		hdr := &tar.Header{Name: k, Mode: 0o644, Size: int64(len(files[k])), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)}
		if strings.HasSuffix(k, "/") {
			hdr.Typeflag, hdr.Size, hdr.Mode = tar.TypeDir, 0, 0o755
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		if hdr.Size > 0 {
			tw.Write([]byte(files[k]))
		}
	}
	tw.Close()
	data := buf.Bytes()
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(data)), nil })
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// testImage is an image whose layers hold the given files; marker makes the config unique.
func testImage(t testing.TB, marker string, layers ...map[string]string) v1.Image {
	t.Helper()
	img := empty.Image
	for _, files := range layers {
		var err error
		if img, err = mutate.AppendLayers(img, layerOf(t, files)); err != nil {
			t.Fatal(err)
		}
	}
	img, err := mutate.Config(img, v1.Config{Env: []string{"MARKER=" + marker}, Cmd: []string{"/bin/sh"}, User: "1000", Labels: map[string]string{"m": marker}, Volumes: map[string]struct{}{"/data": {}}})
	if err != nil {
		t.Fatal(err)
	}
	return img
}

func push(t testing.TB, ref string, img v1.Image) {
	t.Helper()
	r, err := name.ParseReference(ref, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := ggcr.Write(r, img); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
}

func newService(t testing.TB, mod ...func(*Options)) *Service {
	t.Helper()
	opts := Options{Root: filepath.Join(t.TempDir(), "images"), PullProgressTimeout: 10 * time.Second, MaxConcurrentDownloads: 3}
	for _, m := range mod {
		m(&opts)
	}
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func idOf(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.ConfigName()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func digestOfImage(t testing.TB, img v1.Image) string {
	t.Helper()
	h, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

func snapshotDirs(t *testing.T, s *Service) []string {
	t.Helper()
	ents, err := os.ReadDir(s.snapDir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func TestPullGetList(t *testing.T) {
	reg := testRegistry(t, nil)
	img := testImage(t, "a", map[string]string{"etc/": "", "etc/base": "base"}, map[string]string{"etc/top": "top", ".wh.gone": ""})
	push(t, reg+"/test/app:v1", img)
	s := newService(t)
	ctx := context.Background()

	got, err := s.Pull(ctx, reg+"/test/app:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	id, dgst := idOf(t, img), digestOfImage(t, img)
	if got.ID != id {
		t.Errorf("ID = %s, want config digest %s", got.ID, id)
	}
	if want := []string{reg + "/test/app:v1"}; !slices.Equal(got.RepoTags, want) {
		t.Errorf("RepoTags = %v, want %v", got.RepoTags, want)
	}
	if want := []string{reg + "/test/app@" + dgst}; !slices.Equal(got.RepoDigests, want) {
		t.Errorf("RepoDigests = %v, want %v", got.RepoDigests, want)
	}
	m, _ := img.Manifest()
	if want := uint64(m.Layers[0].Size + m.Layers[1].Size); got.Size != want {
		t.Errorf("Size = %d, want %d", got.Size, want)
	}
	if got.Config.User != "1000" || !slices.Equal(got.Config.Env, []string{"MARKER=a"}) || !slices.Equal(got.Config.Volumes, []string{"/data"}) || got.Config.Labels["m"] != "a" || len(got.ConfigJSON) == 0 {
		t.Errorf("Config = %+v", got.Config)
	}

	hex := strings.TrimPrefix(id, "sha256:")
	for _, ref := range []string{reg + "/test/app:v1", reg + "/test/app@" + dgst, id, hex, hex[:12], "sha256:" + hex[:8]} {
		t.Run("get "+ref, func(t *testing.T) {
			g, err := s.Get(ctx, ref)
			if err != nil || g.ID != id {
				t.Fatalf("Get(%q) = %s, %v", ref, g.ID, err)
			}
		})
	}
	for _, ref := range []string{reg + "/test/app:v2", "busybox", "sha256:" + strings.Repeat("0", 64), "0000"} {
		if _, err := s.Get(ctx, ref); !errors.Is(err, errdefs.ErrNotFound) || !strings.Contains(err.Error(), ref) {
			t.Errorf("Get(%q) err = %v, want NotFound naming it", ref, err)
		}
	}
	if _, err := s.Get(ctx, "Bad:Ref!"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("Get(malformed) err = %v, want InvalidArgument", err)
	}

	lowers, err := s.Lowers(ctx, id)
	if err != nil || len(lowers) != 2 {
		t.Fatalf("Lowers = %v, %v", lowers, err)
	}
	if b, err := os.ReadFile(filepath.Join(lowers[0], "etc/top")); err != nil || string(b) != "top" {
		t.Errorf("top layer first: %q %v", b, err)
	}
	if b, err := os.ReadFile(filepath.Join(lowers[1], "etc/base")); err != nil || string(b) != "base" {
		t.Errorf("base layer last: %q %v", b, err)
	}
	if fi, err := os.Lstat(filepath.Join(lowers[0], "gone")); err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		t.Errorf("whiteout not converted: %v %v", fi, err)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Errorf("List = %+v, %v", list, err)
	}
	u, err := s.FsUsage(ctx)
	if err != nil || u.UsedBytes == 0 || u.InodesUsed == 0 || u.Mountpoint != s.opts.Root {
		t.Errorf("FsUsage = %+v, %v", u, err)
	}
}

func TestTagsAndRegistries(t *testing.T) {
	reg1, reg2 := testRegistry(t, nil), testRegistry(t, nil)
	img1 := testImage(t, "one", map[string]string{"f": "1"})
	img2 := testImage(t, "two", map[string]string{"f": "2"})
	ctx := context.Background()
	s := newService(t)

	push(t, reg1+"/app:a", img1)
	push(t, reg1+"/app:b", img1)
	push(t, reg2+"/mirror/app:x", img1)
	for _, ref := range []string{reg1 + "/app:a", reg1 + "/app:b", reg2 + "/mirror/app:x"} {
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	g, err := s.Get(ctx, idOf(t, img1))
	if err != nil {
		t.Fatal(err)
	}
	wantTags := []string{reg1 + "/app:a", reg1 + "/app:b", reg2 + "/mirror/app:x"}
	slices.Sort(wantTags)
	if !slices.Equal(g.RepoTags, wantTags) {
		t.Errorf("RepoTags = %v, want %v", g.RepoTags, wantTags)
	}
	wantDigests := []string{reg1 + "/app@" + digestOfImage(t, img1), reg2 + "/mirror/app@" + digestOfImage(t, img1)}
	slices.Sort(wantDigests)
	if !slices.Equal(g.RepoDigests, wantDigests) {
		t.Errorf("RepoDigests = %v, want %v", g.RepoDigests, wantDigests)
	}

	// The tag moves: img1 loses reg1/app:a but stays reachable by id and digest.
	push(t, reg1+"/app:a", img2)
	if _, err := s.Pull(ctx, reg1+"/app:a", nil); err != nil {
		t.Fatal(err)
	}
	if g, _ := s.Get(ctx, reg1+"/app:a"); g.ID != idOf(t, img2) {
		t.Errorf("moved tag resolves to %s, want %s", g.ID, idOf(t, img2))
	}
	old, err := s.Get(ctx, idOf(t, img1))
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(old.RepoTags, reg1+"/app:a") || !slices.Contains(old.RepoTags, reg1+"/app:b") {
		t.Errorf("old image tags = %v", old.RepoTags)
	}
	if list, _ := s.List(ctx); len(list) != 2 {
		t.Errorf("List has %d images, want 2", len(list))
	}
}

func TestRemove(t *testing.T) {
	reg := testRegistry(t, nil)
	shared := map[string]string{"shared": "base"}
	img := testImage(t, "r", shared, map[string]string{"own": "x"})
	other := testImage(t, "o", shared)
	push(t, reg+"/app:v1", img)
	push(t, reg+"/other:v1", other)
	ctx := context.Background()
	hex := strings.TrimPrefix(idOf(t, img), "sha256:")
	tests := []struct{ name, ref string }{
		{name: "by tag", ref: reg + "/app:v1"},
		{name: "by id", ref: idOf(t, img)},
		{name: "by id prefix", ref: hex[:10]},
		{name: "by digest", ref: reg + "/app@" + digestOfImage(t, img)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t)
			if _, err := s.Pull(ctx, reg+"/app:v1", nil); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Pull(ctx, reg+"/other:v1", nil); err != nil {
				t.Fatal(err)
			}
			if err := s.Remove(ctx, tt.ref); err != nil {
				t.Fatal(err)
			}
			for _, ref := range []string{reg + "/app:v1", idOf(t, img), reg + "/app@" + digestOfImage(t, img)} {
				if _, err := s.Get(ctx, ref); !errors.Is(err, errdefs.ErrNotFound) {
					t.Errorf("Get(%s) after remove: %v", ref, err)
				}
			}
			if err := s.Remove(ctx, tt.ref); err != nil {
				t.Errorf("second Remove = %v, want nil", err)
			}
			if err := s.GC(ctx); err != nil {
				t.Fatal(err)
			}
			// The shared base layer stays for the other image; the own layer goes.
			if dirs := snapshotDirs(t, s); len(dirs) != 1 {
				t.Errorf("snapshots after GC = %v, want 1", dirs)
			}
			if _, err := s.Lowers(ctx, idOf(t, other)); err != nil {
				t.Errorf("other image broken: %v", err)
			}
			if s.content.Has(idOf(t, img)) || !s.content.Has(idOf(t, other)) {
				t.Errorf("config blobs not collected correctly")
			}
		})
	}
}

func TestLeaseKeepsSnapshots(t *testing.T) {
	reg := testRegistry(t, nil)
	img := testImage(t, "l", map[string]string{"a": "a"})
	push(t, reg+"/app:v1", img)
	ctx := context.Background()
	s := newService(t)
	if _, err := s.Pull(ctx, reg+"/app:v1", nil); err != nil {
		t.Fatal(err)
	}
	lowers, _ := s.Lowers(ctx, idOf(t, img))
	if err := s.Lease(ctx, "ctr1", idOf(t, img)); err != nil {
		t.Fatal(err)
	}
	if err := s.Remove(ctx, reg+"/app:v1"); err != nil {
		t.Fatal(err)
	}
	s.GC(ctx)
	if _, err := os.Stat(lowers[0]); err != nil {
		t.Fatalf("leased snapshot removed: %v", err)
	}
	if err := s.Unlease(ctx, "ctr1"); err != nil {
		t.Fatal(err)
	}
	s.GC(ctx)
	if _, err := os.Stat(lowers[0]); !os.IsNotExist(err) {
		t.Fatalf("snapshot kept after unlease: %v", err)
	}
	if err := s.Lease(ctx, "ctr2", "nosuch:image"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("lease of unknown image: %v", err)
	}
}

func TestConcurrentPullsCollapse(t *testing.T) {
	var blobGets atomic.Int64
	reg := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				blobGets.Add(1)
				time.Sleep(50 * time.Millisecond)
			}
			h.ServeHTTP(w, r)
		})
	})
	img := testImage(t, "c", map[string]string{"a": "a"}, map[string]string{"b": "b"})
	push(t, reg+"/app:v1", img)
	s := newService(t)
	var wg sync.WaitGroup
	errs := make([]error, 5)
	for i := range errs {
		wg.Go(func() {
			_, errs[i] = s.Pull(context.Background(), reg+"/app:v1", nil)
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	// One config and two layers: every blob fetched once for all five callers.
	if n := blobGets.Load(); n != 3 {
		t.Errorf("blob GETs = %d, want 3", n)
	}
	if dirs := snapshotDirs(t, s); len(dirs) != 2 {
		t.Errorf("snapshots = %v", dirs)
	}
}

func TestCorruptBlob(t *testing.T) {
	img := testImage(t, "bad", map[string]string{"a": strings.Repeat("x", 10000)})
	layers, _ := img.Layers()
	ld, _ := layers[0].Digest()
	tests := []struct {
		name    string
		corrupt func([]byte) []byte
	}{
		{name: "flipped byte", corrupt: func(b []byte) []byte { b[len(b)/2] ^= 0xff; return b }},
		{name: "truncated", corrupt: func(b []byte) []byte { return b[:len(b)/2] }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := testRegistry(t, func(h http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if r.Method != http.MethodGet || !strings.HasSuffix(r.URL.Path, ld.String()) {
						h.ServeHTTP(w, r)
						return
					}
					rec := httptest.NewRecorder()
					h.ServeHTTP(rec, r)
					body := tt.corrupt(rec.Body.Bytes())
					w.Header().Set("Content-Length", fmt.Sprint(len(body)))
					w.WriteHeader(rec.Code)
					w.Write(body)
				})
			})
			push(t, reg+"/app:v1", img)
			s := newService(t)
			if _, err := s.Pull(context.Background(), reg+"/app:v1", nil); err == nil {
				t.Fatal("pull of a corrupt layer succeeded")
			}
			if dirs := snapshotDirs(t, s); len(dirs) != 0 {
				t.Errorf("partial snapshots left: %v", dirs)
			}
			if list, _ := s.List(context.Background()); len(list) != 0 {
				t.Errorf("image recorded: %+v", list)
			}
			if ents, _ := os.ReadDir(s.content.IngestDir()); len(ents) != 0 {
				t.Errorf("ingest not empty: %v", ents)
			}
		})
	}
}

func TestAuth(t *testing.T) {
	reg := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if u, p, ok := r.BasicAuth(); !ok || u != "alice" || p != "s3cret" {
				w.Header().Set("WWW-Authenticate", `Basic realm="test"`)
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	img := testImage(t, "auth", map[string]string{"a": "a"})
	// Push through the auth wrapper with the right credentials.
	r, _ := name.ParseReference(reg+"/private/app:v1", name.Insecure)
	if err := ggcr.Write(r, img, ggcr.WithAuth(&basicAuth{"alice", "s3cret"})); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		auth    *Auth
		wantErr error
	}{
		{name: "anonymous", wantErr: errdefs.ErrUnauthenticated},
		{name: "wrong password", auth: &Auth{Username: "alice", Password: "nope"}, wantErr: errdefs.ErrUnauthenticated},
		{name: "username and password", auth: &Auth{Username: "alice", Password: "s3cret"}},
		{name: "base64 auth", auth: &Auth{Auth: base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))}},
		{name: "malformed auth", auth: &Auth{Auth: "!!!"}, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(t)
			_, err := s.Pull(context.Background(), reg+"/private/app:v1", tt.auth)
			if tt.wantErr == nil {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == errdefs.ErrUnauthenticated && !strings.Contains(err.Error(), reg) {
				t.Errorf("error does not name the registry: %v", err)
			}
		})
	}
}

type basicAuth struct{ user, pass string }

func (b *basicAuth) Authorization() (*authn.AuthConfig, error) {
	return &authn.AuthConfig{Username: b.user, Password: b.pass}, nil
}

func TestMirrors(t *testing.T) {
	img := testImage(t, "m", map[string]string{"a": "a"})
	var mirrorHits atomic.Int64
	mirror := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mirrorHits.Add(1)
			h.ServeHTTP(w, r)
		})
	})
	empty := testRegistry(t, nil)
	down := httptest.NewServer(http.NotFoundHandler())
	downHost := strings.TrimPrefix(down.URL, "http://")
	down.Close()
	upstream := testRegistry(t, nil)
	push(t, upstream+"/lib/app:v1", img)
	push(t, mirror+"/lib/app:v2", img)

	certs := t.TempDir()
	os.MkdirAll(filepath.Join(certs, upstream), 0o755)
	hosts := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n[host.\"http://%s\"]\n", upstream, downHost, empty, mirror)
	os.WriteFile(filepath.Join(certs, upstream, "hosts.toml"), []byte(hosts), 0o644)
	s := newService(t, func(o *Options) { o.CertsDir = certs })
	ctx := context.Background()

	// v2 exists only on the last mirror: the dead and the empty mirror are skipped.
	g, err := s.Pull(ctx, upstream+"/lib/app:v2", nil)
	if err != nil {
		t.Fatal(err)
	}
	if mirrorHits.Load() == 0 || g.ID != idOf(t, img) {
		t.Errorf("mirror not used: hits %d", mirrorHits.Load())
	}
	// Names are the upstream's, not the mirror's.
	if !slices.Equal(g.RepoTags, []string{upstream + "/lib/app:v2"}) {
		t.Errorf("RepoTags = %v", g.RepoTags)
	}
	// v1 is on no mirror: falls back to the upstream server.
	if _, err := s.Pull(ctx, upstream+"/lib/app:v1", nil); err != nil {
		t.Fatal(err)
	}
	// Missing everywhere: NotFound.
	if _, err := s.Pull(ctx, upstream+"/lib/app:v3", nil); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing everywhere: %v", err)
	}
}

func TestPullProgressTimeout(t *testing.T) {
	release := make(chan struct{})
	reg := testRegistry(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodGet && strings.Contains(r.URL.Path, "/blobs/") {
				select {
				case <-release:
				case <-r.Context().Done():
				}
				return
			}
			h.ServeHTTP(w, r)
		})
	})
	t.Cleanup(func() { close(release) })
	push(t, reg+"/app:v1", testImage(t, "slow", map[string]string{"a": "a"}))
	s := newService(t, func(o *Options) { o.PullProgressTimeout = 300 * time.Millisecond })
	start := time.Now()
	_, err := s.Pull(context.Background(), reg+"/app:v1", nil)
	if err == nil || !strings.Contains(err.Error(), "no data received") {
		t.Fatalf("err = %v, want progress timeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %s", d)
	}
}

func TestIndexPicksPlatform(t *testing.T) {
	reg := testRegistry(t, nil)
	mine := testImage(t, "mine", map[string]string{"mine": "1"})
	other := testImage(t, "other", map[string]string{"other": "1"})
	idx := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "s390x"}}},
		mutate.IndexAddendum{Add: mine, Descriptor: v1.Descriptor{Platform: ptr(hostPlatform())}},
	)
	idx = mutate.IndexMediaType(idx, types.OCIImageIndex)
	r, _ := name.ParseReference(reg+"/multi:v1", name.Insecure)
	if err := ggcr.WriteIndex(r, idx); err != nil {
		t.Fatal(err)
	}
	s := newService(t)
	g, err := s.Pull(context.Background(), reg+"/multi:v1", nil)
	if err != nil {
		t.Fatal(err)
	}
	idxDigest, _ := idx.Digest()
	if g.ID != idOf(t, mine) || !slices.Equal(g.RepoDigests, []string{reg + "/multi@" + idxDigest.String()}) {
		t.Errorf("got %s %v, want %s with index digest", g.ID, g.RepoDigests, idOf(t, mine))
	}
}

func ptr[T any](v T) *T { return &v }

func TestImportOCILayout(t *testing.T) {
	img := testImage(t, "imp", map[string]string{"hello": "world"})
	dir := t.TempDir()
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{annotationRefName: "example.com/air/gapped:1.0"})); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		rel, _ := filepath.Rel(dir, path)
		if rel == "." || err != nil {
			return err
		}
		hdr, _ := tar.FileInfoHeader(fi, "")
		hdr.Name = rel
		tw.WriteHeader(hdr)
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(path)
			tw.Write(b)
		}
		return nil
	})
	tw.Close()

	s := newService(t)
	imgs, err := s.Import(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].ID != idOf(t, img) || !slices.Equal(imgs[0].RepoTags, []string{"example.com/air/gapped:1.0"}) {
		t.Fatalf("imported %+v", imgs)
	}
	lowers, err := s.Lowers(context.Background(), "example.com/air/gapped:1.0")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(lowers[0], "hello")); string(b) != "world" {
		t.Errorf("imported layer content %q", b)
	}
	if _, err := s.Import(context.Background(), strings.NewReader("not a tar")); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("garbage import: %v", err)
	}
}

func TestImportDockerArchive(t *testing.T) {
	img := testImage(t, "docker", map[string]string{"d": "1"})
	tag, _ := name.NewTag("busybox:imported")
	var buf bytes.Buffer
	if err := tarball.Write(tag, img, &buf); err != nil {
		t.Fatal(err)
	}
	s := newService(t)
	imgs, err := s.Import(context.Background(), &buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(imgs) != 1 || imgs[0].ID != idOf(t, img) || !slices.Equal(imgs[0].RepoTags, []string{"docker.io/library/busybox:imported"}) {
		t.Fatalf("imported %+v", imgs)
	}
}

func TestRestartCleansUp(t *testing.T) {
	reg := testRegistry(t, nil)
	img := testImage(t, "restart", map[string]string{"a": "a"})
	push(t, reg+"/app:v1", img)
	root := filepath.Join(t.TempDir(), "images")
	s, err := New(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), reg+"/app:v1", nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// What a crash mid-pull leaves: a temp snapshot, an unrecorded snapshot, partial blobs.
	for _, d := range []string{"snapshots/tmp-123/fs/etc", "snapshots/99/fs", "ingest/blob-1"} {
		os.MkdirAll(filepath.Join(root, d), 0o755)
	}
	s2, err := New(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s2.Close() })
	for _, d := range []string{"snapshots/tmp-123", "snapshots/99", "ingest/blob-1"} {
		if _, err := os.Stat(filepath.Join(root, d)); !os.IsNotExist(err) {
			t.Errorf("%s survived restart: %v", d, err)
		}
	}
	if _, err := s2.Lowers(context.Background(), reg+"/app:v1"); err != nil {
		t.Errorf("committed image lost: %v", err)
	}
}

func TestAmbiguousPrefix(t *testing.T) {
	s := newService(t)
	ids := []string{"sha256:ab12" + strings.Repeat("0", 60), "sha256:ab13" + strings.Repeat("0", 60)}
	s.db.Update(func(tx *bolt.Tx) error {
		for _, id := range ids {
			put(tx.Bucket(bucketImages), id, imageRecord{ID: id})
		}
		return nil
	})
	tests := []struct {
		ref     string
		wantErr error
		wantID  string
	}{
		{ref: "ab1", wantErr: errdefs.ErrInvalidArgument},
		{ref: "sha256:ab", wantErr: errdefs.ErrInvalidArgument},
		{ref: "ab12", wantID: ids[0]},
		{ref: "ab14", wantErr: errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			var rec imageRecord
			err := s.db.View(func(tx *bolt.Tx) (err error) { rec, err = resolve(tx, tt.ref); return })
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || rec.ID != tt.wantID {
				t.Fatalf("resolve = %s, %v", rec.ID, err)
			}
		})
	}
}

func TestNoSpace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a small tmpfs")
	}
	root := t.TempDir()
	if err := unix.Mount("tmpfs", root, "tmpfs", 0, "size=1m"); err != nil {
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(root, unix.MNT_DETACH) })
	reg := testRegistry(t, nil)
	push(t, reg+"/big:v1", testImage(t, "big", map[string]string{"big": strings.Repeat("z", 4<<20)}))
	s := newService(t, func(o *Options) { o.Root = filepath.Join(root, "images") })
	_, err := s.Pull(context.Background(), reg+"/big:v1", nil)
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !strings.Contains(err.Error(), "no space left on device writing layer") {
		t.Fatalf("err = %v, want a clear ENOSPC error", err)
	}
	if dirs := snapshotDirs(t, s); len(dirs) != 0 {
		t.Errorf("partial snapshot left: %v", dirs)
	}
}
