package images

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// syncBuffer is a log sink the pull's goroutines may write to concurrently.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestPullErrorsHideCredentials: registries and mirrors that fail on URLs carrying secrets
// produce pull errors and logs without the secret. go-containerregistry already redacts the
// query of a URL a server answered an error for (and refuses token realms on private
// addresses), but not the URL of a request that got no answer (net/http's *url.Error strips
// only a password), nor the reference itself.
func TestPullErrorsHideCredentials(t *testing.T) {
	const secret = "s3cr3tT0ken"
	// Nothing listens on 127.0.0.1:1: a request there fails with net/http's own error.
	const dead = "127.0.0.1:1"
	// A registry that redirects every manifest to pre-signed storage: reachable or dead.
	redirecting := func(storage string) *httptest.Server {
		var srv *httptest.Server
		srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasPrefix(r.URL.Path, "/storage/"):
				w.WriteHeader(http.StatusForbidden)
			case strings.Contains(r.URL.Path, "/manifests/"):
				if storage == "" {
					storage = strings.TrimPrefix(srv.URL, "http://")
				}
				loc := "http://" + storage + "/storage/blob?X-Amz-Credential=AKIA&X-Amz-Signature=" + secret
				http.Redirect(w, r, loc, http.StatusTemporaryRedirect)
			}
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	host := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
	toDeadStorage := host(redirecting(dead))
	toLiveStorage := host(redirecting(""))

	// Upstream 127.0.0.1:1 is dead; its mirror redirects to dead storage.
	certs := t.TempDir()
	os.MkdirAll(filepath.Join(certs, dead), 0o755)
	hosts := fmt.Sprintf("server = \"http://%s\"\n[host.\"http://%s\"]\n", dead, toDeadStorage)
	os.WriteFile(filepath.Join(certs, dead, "hosts.toml"), []byte(hosts), 0o644)

	tests := []struct{ name, ref string }{
		{"redirect to dead pre-signed storage", toDeadStorage + "/app:v1"},
		{"redirect to refusing pre-signed storage", toLiveStorage + "/app:v1"},
		{"mirror redirecting to dead storage", dead + "/app:v1"},
		{"reference written as a url", "https://alice:" + secret + "@" + toLiveStorage + "/app:v1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logged syncBuffer
			s := newService(t, func(o *Options) {
				o.CertsDir = certs
				o.Logger = slog.New(slog.NewTextHandler(&logged, nil))
			})
			_, err := s.Pull(context.Background(), tt.ref, nil)
			if err == nil {
				t.Fatal("pull succeeded")
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error leaks the secret: %v", err)
			}
			if !strings.Contains(err.Error(), "REDACTED") {
				t.Errorf("error does not show that it was redacted: %v", err)
			}
			if strings.Contains(logged.String(), secret) {
				t.Errorf("log leaks the secret:\n%s", logged.String())
			}
		})
	}
}
