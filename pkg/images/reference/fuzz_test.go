package reference

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// FuzzNormalize checks that any string is either rejected as an invalid argument or
// normalised to a canonical form that is a fixed point: the image store keys records
// by the normalised name, so Normalize(Normalize(x)) != Normalize(x) would make one
// image answer to two names.
func FuzzNormalize(f *testing.F) {
	hex := strings.Repeat("ab", 32)
	for _, s := range []string{
		"busybox", "busybox:1.36", "user/app", "docker.io/busybox", "index.docker.io/library/busybox:1",
		"127.0.0.1:5000/test/busybox", "localhost:5000/busybox:v1", "localhost/busybox",
		"busybox@sha256:" + hex, "quay.io/a/b:v1@sha256:" + hex, "[::1]:5000/app", "BusyBox",
		"a//b", hex, "sha256:" + hex, "registry-1.docker.io/x", "Foo.com/x", "a:1/b:c@sha512:" + hex,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := Parse(s)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Parse(%q) error %v is not ErrInvalidArgument", s, err)
			}
			if _, nerr := Normalize(s); nerr == nil {
				t.Fatalf("Parse(%q) failed but Normalize accepted it", s)
			}
			return
		}
		n, err := Normalize(s)
		if err != nil {
			t.Fatalf("Parse(%q) accepted but Normalize failed: %v", s, err)
		}
		if n != r.String() {
			t.Fatalf("Normalize(%q) = %q, Parse().String() = %q", s, n, r.String())
		}
		r2, err := Parse(n)
		if err != nil {
			t.Fatalf("normalised %q (from %q) is rejected: %v", n, s, err)
		}
		if r2 != r {
			t.Fatalf("Parse(%q) = %+v, but Parse of its normal form %q = %+v", s, r, n, r2)
		}
		if r.Tag == "" && r.Digest == "" {
			t.Fatalf("Parse(%q) has neither tag nor digest", s)
		}
		if got := r.Tagged(); r.Tag != "" && !strings.HasSuffix(got, ":"+r.Tag) {
			t.Fatalf("Tagged() = %q for tag %q", got, r.Tag)
		}
		if IsDigested(r.Name()) {
			t.Fatalf("name %q of %q contains a digest", r.Name(), s)
		}
	})
}

// FuzzParseID checks that the id helpers agree: a full id is also a valid prefix of itself.
func FuzzParseID(f *testing.F) {
	f.Add("sha256:" + strings.Repeat("0f", 32))
	f.Add(strings.Repeat("ab", 32))
	f.Add("sha256:ab12")
	f.Add("sha256:")
	f.Fuzz(func(t *testing.T, s string) {
		id, ok := ParseID(s)
		if !ok {
			return
		}
		hex, ok := IDPrefix(id)
		if !ok || "sha256:"+hex != id {
			t.Fatalf("ParseID(%q) = %q, but IDPrefix(%q) = %q, %v", s, id, id, hex, ok)
		}
		if again, ok := ParseID(id); !ok || again != id {
			t.Fatalf("ParseID not idempotent on %q: %q, %v", id, again, ok)
		}
	})
}
