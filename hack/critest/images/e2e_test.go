package main

import (
	"archive/tar"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/berth-runtime/berth/test/fixture"
)

// e2eRefs are the images of kubernetes v1.37.2's test/utils/image/manifest.go the registry
// serves with --agnhost.
var e2eRefs = []string{
	"registry.k8s.io/e2e-test-images/agnhost:2.66.1",
	"registry.k8s.io/e2e-test-images/agnhost:2.55",
	"registry.k8s.io/e2e-test-images/kitten:1.8",
	"registry.k8s.io/e2e-test-images/nautilus:1.8",
	"registry.k8s.io/e2e-test-images/busybox:1.37.0-2",
	"registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1",
	"registry.k8s.io/e2e-test-images/nginx:1.27.0-2",
	"registry.k8s.io/e2e-test-images/nginx:1.28.0-2",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.4",
	"registry.k8s.io/e2e-test-images/nonroot:1.5",
	"registry.k8s.io/e2e-test-images/sample-apiserver:1.29.2",
	"registry.k8s.io/etcd:3.7.0-0",
	"registry.k8s.io/pause:3.10.2",
}

// flatFiles reads every regular file and symlink of img's flattened rootfs.
func flatFiles(t *testing.T, img v1.Image) map[string]string {
	t.Helper()
	rc := mutate.Extract(img)
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		name := "/" + strings.TrimPrefix(h.Name, "/")
		switch h.Typeflag {
		case tar.TypeSymlink:
			out[name] = "-> " + h.Linkname
		case tar.TypeReg:
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			out[name] = string(b)
		}
	}
}

func TestE2ECatalogue(t *testing.T) {
	dir := t.TempDir()
	agnhost := filepath.Join(dir, "agnhost")
	if err := os.WriteFile(agnhost, []byte("#!/bin/sh\necho agnhost\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	// The upstream busybox beside agnhost: here the host's, told apart by its bytes.
	bb, err := os.ReadFile(fixture.DefaultBusybox)
	if err != nil {
		t.Fatal(err)
	}
	bb = append(bb, "upstream"...)
	if err := os.WriteFile(filepath.Join(dir, upstreamBusybox), bb, 0o755); err != nil {
		t.Fatal(err)
	}
	nnp, err := buildNNP("go")
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{sampleAPIServer: "#!/bin/sh\necho sample-apiserver\n", "etcd": "#!/bin/sh\necho etcd\n"} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	imgs, err := allImages(new(fixture.Builder), nnp, e2eBinaries{Agnhost: agnhost, Etcd: filepath.Join(dir, "etcd")})
	if err != nil {
		t.Fatal(err)
	}
	for _, ref := range append(append([]string{}, e2eRefs...), critestRefs[0]) {
		findImage(t, imgs, ref)
	}
	if digestOf(t, imgs, e2eRefs[0]) == digestOf(t, imgs, e2eRefs[1]) {
		t.Error("agnhost:2.66.1 and agnhost:2.55 share a digest")
	}
	if digestOf(t, imgs, e2eRefs[6]) == digestOf(t, imgs, e2eRefs[7]) {
		t.Error("nginx:1.27.0-2 and nginx:1.28.0-2 share a digest")
	}

	files := flatFiles(t, imageOf(t, imgs, e2eRefs[0]))
	if files["/agnhost"] != "#!/bin/sh\necho agnhost\n" {
		t.Errorf("/agnhost is %q, not the given binary", files["/agnhost"])
	}
	if files["/agnhost-2"] != "-> agnhost" {
		t.Errorf("/agnhost-2 is %q", files["/agnhost-2"])
	}
	if !strings.Contains(flatFiles(t, imageOf(t, imgs, e2eRefs[2]))["/etc/os-release"], `NAME="Alpine Linux"`) {
		t.Errorf("kitten (an image volume's source) lacks its alpine base's /etc/os-release")
	}
	if !strings.Contains(files["/etc/group"], "group-defined-in-image:x:50000:user-defined-in-image") {
		t.Errorf("/etc/group lacks group-defined-in-image:\n%s", files["/etc/group"])
	}
	// curl runs in the image: its libraries and loader came along.
	root := t.TempDir()
	if err := untar(mutate.Extract(imageOf(t, imgs, e2eRefs[0])), root); err != nil {
		t.Fatal(err)
	}
	if out, err := chrootCmd(root, nil, "/usr/bin/curl", "--version").CombinedOutput(); err != nil ||
		!strings.HasPrefix(string(out), "curl ") {
		t.Errorf("curl --version in the agnhost image: %v: %s", err, out)
	}
	if out, err := chrootCmd(root, nil, "/bin/bash", "-c", "echo $BASH_VERSION").CombinedOutput(); err != nil ||
		!strings.HasPrefix(string(out), "5.") {
		t.Errorf("bash in the agnhost image: %v: %s", err, out)
	}
	// nc takes the networking specs' UDP flags there (busybox's small nc refuses -u).
	if out, err := chrootCmd(root, nil, "/usr/bin/nc", "-z", "-w", "1", "-u", "127.0.0.1", "9").CombinedOutput(); err != nil {
		t.Errorf("nc -z -w 1 -u in the agnhost image: %v: %s", err, out)
	}

	// glibc-dns-testing's hostname is a glibc binary that runs there.
	groot := t.TempDir()
	if err := untar(mutate.Extract(imageOf(t, imgs, "registry.k8s.io/e2e-test-images/glibc-dns-testing:2.1.1")), groot); err != nil {
		t.Fatal(err)
	}
	if out, err := chrootCmd(groot, nil, "/bin/hostname", "--version").CombinedOutput(); err != nil ||
		!strings.Contains(string(out), "hostname") {
		t.Errorf("hostname --version in glibc-dns-testing: %v: %s", err, out)
	}
	// The DNS specs' dig and getent run in both queriers' images.
	for name, r := range map[string]string{"agnhost": root, "glibc-dns-testing": groot} {
		if out, err := chrootCmd(r, nil, "/usr/bin/dig", "-v").CombinedOutput(); err != nil ||
			!strings.HasPrefix(string(out), "DiG ") {
			t.Errorf("dig -v in %s: %v: %s", name, err, out)
		}
		if out, err := chrootCmd(r, nil, "/usr/bin/getent", "passwd", "root").CombinedOutput(); err != nil ||
			!strings.HasPrefix(string(out), "root:") {
			t.Errorf("getent passwd root in %s: %v: %s", name, err, out)
		}
	}

	// The aggregator spec's two images carry the given binaries where its pod runs them.
	if got := flatFiles(t, imageOf(t, imgs, "registry.k8s.io/e2e-test-images/sample-apiserver:1.29.2"))["/sample-apiserver"]; got != "#!/bin/sh\necho sample-apiserver\n" {
		t.Errorf("sample-apiserver image's /sample-apiserver is %q", got)
	}
	if got := flatFiles(t, imageOf(t, imgs, "registry.k8s.io/etcd:3.7.0-0"))["/usr/local/bin/etcd"]; got != "#!/bin/sh\necho etcd\n" {
		t.Errorf("etcd image's /usr/local/bin/etcd is %q", got)
	}

	// busybox:1.37.0-2 runs the busybox beside agnhost, not the host's.
	if got := flatFiles(t, imageOf(t, imgs, "registry.k8s.io/e2e-test-images/busybox:1.37.0-2"))[fixture.BusyboxPath]; got != string(bb) {
		t.Errorf("busybox:1.37.0-2's %s is not the busybox beside agnhost (%d bytes, want %d)", fixture.BusyboxPath, len(got), len(bb))
	}

	// The fake registry's pause:testing is the served pause:3.10.2, every blob in place.
	pause := digestOf(t, imgs, "registry.k8s.io/pause:3.10.2")
	if got := strings.TrimSpace(files["/var/registry/pause/manifests/testing"]); got != pause.String() {
		t.Fatalf("pause:testing points at %q, want %s", got, pause)
	}
	at := func(sub string, h v1.Hash) string {
		return fmt.Sprintf("/var/registry/pause/%s/sha256/%s/%s/data", sub, h.Hex[:2], h.Hex)
	}
	blobs := []v1.Hash{pause}
	m, err := imageOf(t, imgs, "registry.k8s.io/pause:3.10.2").Manifest()
	if err != nil {
		t.Fatal(err)
	}
	blobs = append(blobs, m.Config.Digest)
	for _, l := range m.Layers {
		blobs = append(blobs, l.Digest)
	}
	for i, h := range blobs {
		sub := "blobs"
		if i == 0 {
			sub = "manifests"
		}
		data, ok := files[at(sub, h)]
		if !ok {
			t.Errorf("%s missing", at(sub, h))
			continue
		}
		if got := fmt.Sprintf("%x", sha256.Sum256([]byte(data))); got != h.Hex {
			t.Errorf("%s holds sha256:%s", at(sub, h), got)
		}
	}
}
