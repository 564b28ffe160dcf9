package main

import (
	"fmt"
	"os"
	"runtime"
	"sort"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-runtime/berth/pkg/images/reference"
	"github.com/berth-runtime/berth/test/fixture"
)

// Upstream names critest v1.37.0 uses (pkg/validate/consts*.go, pkg/framework/util.go,
// pkg/benchmark/image.go). They are kept verbatim so a diff against a newer cri-tools shows
// what moved.
const (
	e2e     = "registry.k8s.io/e2e-test-images/"
	criTest = "gcr.io/k8s-staging-cri-tools/"
	ecr     = "public.ecr.aws/docker/library/"

	// PinnedDigest is the digest critest pulls test-image-digest by: it names the upstream
	// manifest's bytes, which no rebuild can reproduce.
	PinnedDigest = "sha256:9700f9a2f5bf2c45f2f605a0bd3bce7cf37420ec9d3ed50ac2758413308766bf"
)

// Image is one image of the catalogue, served under every name in Refs (one digest).
type Image struct {
	Refs []string // upstream references, e.g. registry.k8s.io/pause:3.9
	How  string   // how the stand-in reproduces what critest checks
	img  v1.Image
}

// Unreproducible are the references critest pulls that no stand-in can satisfy.
type Unreproducible struct{ Ref, Why string }

// PinnedRefs are pulled by an upstream digest; the tests using them are in hack/critest/skips.txt.
func PinnedRefs() []Unreproducible {
	return []Unreproducible{{
		Ref: criTest + "test-image-digest@" + PinnedDigest,
		Why: "pulled by the digest of the upstream manifest; a rebuilt image has another digest",
	}}
}

// catalogue builds every image critest pulls. Images sharing content are built once so
// that tags meant to share a digest (test-image-tags:1..3, pause:3.9 on two registries) do.
func catalogue(b *fixture.Builder, nnp []byte) ([]Image, error) {
	type spec struct {
		refs []string
		how  string
		opts []fixture.Option
		etc  []fixture.File // /etc/passwd and /etc/group; nil means upstream busybox's
	}
	marker := func(name string) fixture.Option { return fixture.WithFile("/"+name, nil, 0o644) }
	user := func(u string) fixture.Option { return fixture.WithUser(u) }
	mk := func(refs []string, how string, opts ...fixture.Option) spec {
		return spec{refs: refs, how: how, opts: opts}
	}
	withEtc := func(s spec, etc []fixture.File) spec { s.etc = etc; return s }
	specs := []spec{
		mk([]string{e2e + "busybox:1.29-2"},
			"busybox rootfs with upstream busybox users (root, www-data, nobody...) and pgrep/ipcs scripts",
			kind("e2e-busybox")),
		mk([]string{e2e + "nginx:1.14-2"},
			"busybox httpd on :80 run as a child named nginx, its pid in /var/run/nginx.pid, pid 1 cmdline says 'master process'",
			nginxOpts("e2e-nginx", 80)...),
		mk([]string{criTest + "hostnet-nginx-" + runtime.GOARCH + ":latest"},
			"as nginx:1.14-2 but on :12003 (images/hostnet-nginx)",
			nginxOpts("hostnet-nginx", 12003)...),
		mk([]string{e2e + "httpd:2.4.39-4"},
			"busybox httpd on :80, logs a line containing 'httpd'",
			httpdOpts()...),
		mk([]string{e2e + "nonewprivs:1.3"},
			"setuid-root static helper /usr/local/bin/nnp printing 'Effective uid: N', User 1000",
			kind("nonewprivs"), user("1000"), fixture.WithEntrypoint("/usr/local/bin/nnp"), fixture.WithCmd(),
			fixture.WithFiles(fixture.File{Path: "/usr/local/bin/nnp", Data: nnp, Mode: os.ModeSetuid | 0o755})),
		mk([]string{"registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9"},
			"/pause shell loop sleeping until SIGTERM/SIGINT, User 65535:65535; one digest on both registries",
			pauseOpts()...),
		mk([]string{criTest + "test-image-user-uid:latest"}, "busybox, User 1002", kind("user-uid"), user("1002")),
		mk([]string{criTest + "test-image-user-username:latest"}, "busybox, User www-data", kind("user-username"), user("www-data")),
		mk([]string{criTest + "test-image-user-uid-group:latest"}, "busybox, User 1003:1004", kind("user-uid-group"), user("1003:1004")),
		mk([]string{criTest + "test-image-user-username-group:latest"}, "busybox, User www-data:1004", kind("user-username-group"), user("www-data:1004")),
		withEtc(mk([]string{criTest + "test-image-predefined-group:latest"},
			"busybox, default-user 1000:1000 also in group-defined-in-image (50000), User 1000",
			kind("predefined-group"), user("1000")), predefinedGroupFiles()),
		mk([]string{criTest + "test-image-latest:latest"}, "busybox + /test-image-latest", marker("test-image-latest")),
		mk([]string{criTest + "test-image-tag:test"}, "busybox + /test-image-tag-test", marker("test-image-tag-test")),
		mk([]string{criTest + "test-image-tag:all"}, "busybox + /test-image-tag-all (differs from :test)", marker("test-image-tag-all")),
		mk([]string{criTest + "test-image-digest:latest"},
			"busybox + /test-image-digest (critest pulls it by the pinned upstream digest: that test is skipped)",
			marker("test-image-digest")),
		mk([]string{criTest + "test-image-1:latest"}, "busybox + /test-image-1", marker("test-image-1")),
		mk([]string{criTest + "test-image-2:latest"}, "busybox + /test-image-2", marker("test-image-2")),
		mk([]string{criTest + "test-image-3:latest"}, "busybox + /test-image-3", marker("test-image-3")),
		mk([]string{criTest + "test-image-tags:1", criTest + "test-image-tags:2", criTest + "test-image-tags:3"},
			"busybox + /same-image; one digest for the three tags", marker("same-image")),
		mk([]string{ecr + "busybox:1.35.0-glibc"}, "busybox + marker (image benchmarks)", marker("busybox-1.35.0-glibc")),
		mk([]string{ecr + "busybox:1-uclibc"}, "busybox + marker (image benchmarks)", marker("busybox-1-uclibc")),
		mk([]string{ecr + "busybox:1"}, "busybox + marker (image benchmarks)", marker("busybox-1")),
		mk([]string{ecr + "busybox:1-glibc"}, "busybox + marker (image benchmarks)", marker("busybox-1-glibc")),
		mk([]string{ecr + "busybox:1-musl"}, "busybox + marker (image benchmarks)", marker("busybox-1-musl")),
		mk([]string{"docker.io/library/busybox:latest", "docker.io/library/busybox:1.37.0"},
			"busybox (not pulled by critest; for crictl and hand tests)", kind("library-busybox")),
	}
	busybox, err := os.ReadFile(fixture.DefaultBusybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox for /bin/ls: %w", err)
	}
	out := make([]Image, 0, len(specs))
	for _, s := range specs {
		if s.etc == nil {
			s.etc = etcFiles("", "")
		}
		img, err := b.Busybox(append(baseOpts(s.etc, busybox), s.opts...)...)
		if err != nil {
			return nil, fmt.Errorf("build %s: %w", s.refs[0], err)
		}
		out = append(out, Image{Refs: s.refs, How: s.how, img: img})
	}
	return out, checkPaths(out)
}

// kind labels an image so that images with otherwise equal content get their own digest.
func kind(k string) fixture.Option { return fixture.WithLabel("io.berth.critest.image", k) }

// Mirror reference of ref on the loopback registry: the repository path is kept, as a
// hosts.toml mirror keeps it (docker.io/busybox -> library/busybox).
func mirrorPath(ref string) (string, error) {
	r, err := reference.Parse(ref)
	if err != nil {
		return "", fmt.Errorf("parse %q: %w", ref, err)
	}
	if r.Digest != "" {
		return r.Path + "@" + r.Digest, nil
	}
	return r.Path + ":" + r.Tag, nil
}

// checkPaths refuses two upstream names that land on one mirror path with different content:
// the mirror cannot tell registries apart.
func checkPaths(imgs []Image) error {
	owner := map[string]int{}
	for i, im := range imgs {
		for _, ref := range im.Refs {
			p, err := mirrorPath(ref)
			if err != nil {
				return err
			}
			if j, ok := owner[p]; ok && j != i {
				return fmt.Errorf("%s and %s share mirror path %s with different content", imgs[j].Refs[0], ref, p)
			}
			owner[p] = i
		}
	}
	return nil
}

// Domains are the registries the catalogue's references live on, sorted.
func Domains(imgs []Image) []string {
	seen := map[string]bool{}
	for _, im := range imgs {
		for _, ref := range im.Refs {
			if r, err := reference.Parse(ref); err == nil {
				seen[r.Domain] = true
			}
		}
	}
	out := make([]string, 0, len(seen))
	for d := range seen {
		out = append(out, d)
	}
	sort.Strings(out)
	return out
}
