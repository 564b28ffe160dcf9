package reference

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestNormalize(t *testing.T) {
	hex := strings.Repeat("ab", 32)
	tests := []struct {
		name, in, want string
		wantErr        bool
	}{
		{name: "short name", in: "busybox", want: "docker.io/library/busybox:latest"},
		{name: "short name with tag", in: "busybox:1.36", want: "docker.io/library/busybox:1.36"},
		{name: "user repo", in: "user/app", want: "docker.io/user/app:latest"},
		{name: "docker.io explicit", in: "docker.io/busybox", want: "docker.io/library/busybox:latest"},
		{name: "index.docker.io", in: "index.docker.io/library/busybox:1", want: "docker.io/library/busybox:1"},
		{name: "registry with port", in: "127.0.0.1:5000/test/busybox", want: "127.0.0.1:5000/test/busybox:latest"},
		{name: "registry with port and tag", in: "localhost:5000/busybox:v1", want: "localhost:5000/busybox:v1"},
		{name: "localhost without port", in: "localhost/busybox", want: "localhost/busybox:latest"},
		{name: "digest", in: "busybox@sha256:" + hex, want: "docker.io/library/busybox@sha256:" + hex},
		{name: "tag and digest", in: "quay.io/a/b:v1@sha256:" + hex, want: "quay.io/a/b:v1@sha256:" + hex},
		{name: "deep path", in: "gcr.io/a/b/c/d:x", want: "gcr.io/a/b/c/d:x"},
		{name: "ipv6 host", in: "[::1]:5000/app", want: "[::1]:5000/app:latest"},
		{name: "uppercase repo", in: "BusyBox", wantErr: true},
		{name: "uppercase component after host", in: "quay.io/Foo/bar", wantErr: true},
		{name: "empty", in: "", wantErr: true},
		{name: "bad tag", in: "busybox:-x", wantErr: true},
		{name: "bad digest", in: "busybox@sha256:abc", wantErr: true},
		{name: "trailing slash", in: "busybox/", wantErr: true},
		{name: "double slash", in: "a//b", wantErr: true},
		{name: "64 hex repo", in: hex, wantErr: true},
		{name: "space", in: "busy box", wantErr: true},
		{name: "too long", in: "a/" + strings.Repeat("b", 300), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Normalize(tt.in)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("Normalize(%q) = %q, %v; want ErrInvalidArgument", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Normalize(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestReferenceParts(t *testing.T) {
	hex := strings.Repeat("01", 32)
	r, err := Parse("127.0.0.1:5000/x/y:t@sha256:" + hex)
	if err != nil {
		t.Fatal(err)
	}
	if r.Domain != "127.0.0.1:5000" || r.Path != "x/y" || r.Tag != "t" || r.Digest != "sha256:"+hex {
		t.Fatalf("parts = %+v", r)
	}
	if r.Identifier() != "sha256:"+hex || r.Tagged() != "127.0.0.1:5000/x/y:t" || r.Digested() != "127.0.0.1:5000/x/y@sha256:"+hex {
		t.Fatalf("derived forms wrong: %q %q %q", r.Identifier(), r.Tagged(), r.Digested())
	}
}

func TestIDs(t *testing.T) {
	hex := strings.Repeat("cd", 32)
	tests := []struct {
		name, in   string
		wantID     string
		wantIDOK   bool
		wantPrefix string
		wantPfxOK  bool
	}{
		{name: "full with algo", in: "sha256:" + hex, wantID: "sha256:" + hex, wantIDOK: true, wantPrefix: hex, wantPfxOK: true},
		{name: "bare hex", in: hex, wantID: "sha256:" + hex, wantIDOK: true, wantPrefix: hex, wantPfxOK: true},
		{name: "short prefix", in: "cdcd12", wantPrefix: "cdcd12", wantPfxOK: true},
		{name: "prefix with algo", in: "sha256:cd", wantPrefix: "cd", wantPfxOK: true},
		{name: "not hex", in: "busybox"},
		{name: "uppercase hex", in: "ABCD"},
		{name: "too long", in: hex + "a"},
		{name: "empty after algo", in: "sha256:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, ok := ParseID(tt.in)
			if id != tt.wantID || ok != tt.wantIDOK {
				t.Errorf("ParseID(%q) = %q, %v", tt.in, id, ok)
			}
			p, ok := IDPrefix(tt.in)
			if p != tt.wantPrefix || ok != tt.wantPfxOK {
				t.Errorf("IDPrefix(%q) = %q, %v", tt.in, p, ok)
			}
		})
	}
}
