package content

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(s[:])
}

func TestPutGet(t *testing.T) {
	data := []byte(`{"config":1}`)
	tests := []struct {
		name    string
		dgst    string
		wantErr error
	}{
		{name: "matching digest", dgst: digest(data)},
		{name: "wrong digest", dgst: digest([]byte("other")), wantErr: errdefs.ErrDataLoss},
		{name: "malformed digest", dgst: "sha256:../../etc/passwd", wantErr: errdefs.ErrInvalidArgument},
		{name: "other algorithm", dgst: "sha512:abcd", wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			s, err := New(root)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Put(tt.dgst, data)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Put err = %v, want %v", err, tt.wantErr)
				}
				if n := countFiles(t, root); n != 0 {
					t.Errorf("%d files left after a failed Put", n)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Get(tt.dgst)
			if err != nil || string(got) != string(data) {
				t.Fatalf("Get = %q, %v", got, err)
			}
			if ents, _ := os.ReadDir(s.IngestDir()); len(ents) != 0 {
				t.Errorf("ingest not empty after commit: %v", ents)
			}
			if err := s.Delete(tt.dgst); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Get(tt.dgst); !errors.Is(err, errdefs.ErrNotFound) {
				t.Errorf("Get after Delete = %v", err)
			}
		})
	}
}

func TestNewWipesIngest(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "ingest"), 0o700)
	os.WriteFile(filepath.Join(root, "ingest", "partial"), []byte("x"), 0o600)
	if _, err := New(root); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "ingest", "partial")); !os.IsNotExist(err) {
		t.Errorf("partial ingest survived: %v", err)
	}
}

func countFiles(t *testing.T, root string) int {
	n := 0
	filepath.WalkDir(root, func(_ string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			n++
		}
		return nil
	})
	return n
}
