package main

import (
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-runtime/berth/test/fixture"
)

// Images k8s.io/kubernetes/test/e2e v1.37.2 pulls (test/utils/image/manifest.go) for the
// [Conformance] and [NodeConformance] specs a single offline node runs; served only when
// the registry is given the agnhost binary (hack/conformance.sh builds it from the
// kubernetes module). Stand-ins reproduce what the specs check, nothing more.
const (
	agnhostPorterDir = "agnhost-porter" // localhost.crt/key beside the agnhost binary
	hostCurl         = "/usr/bin/curl"
	hostNc           = "/bin/nc.openbsd"
	hostHostname     = "/bin/hostname"
	hostDig          = "/usr/bin/dig"
	hostGetent       = "/usr/bin/getent"
	hostBash         = "/bin/bash"
	// upstreamBusybox lies beside the agnhost binary: busybox built from its release
	// tarball without Debian's patches (hack/conformance.sh). Debian's ash drops variables
	// whose names are not shell names ("p-data-1") on start; upstream's keeps and exports
	// them, which the ConfigMap and Secret env specs read back with `sh -c env`.
	upstreamBusybox = "busybox"
	// sampleAPIServer lies beside the agnhost binary too: k8s.io/sample-apiserver at the
	// cluster's version (hack/conformance.sh), which the aggregator spec deploys.
	sampleAPIServer = "sample-apiserver"
)

// agnhostOSRelease is alpine's /etc/os-release as upstream's agnhost base carries it, with a
// comment saying what this image is.
const agnhostOSRelease = `# berth's stand-in for an alpine-based e2e image (hack/critest/images/e2e.go)
NAME="Alpine Linux"
ID=alpine
VERSION_ID=3.21
PRETTY_NAME="Alpine Linux v3.21"
HOME_URL="https://alpinelinux.org/"
`

// e2eBinaries are the programs e2e.test's images carry that the host has no package for.
type e2eBinaries struct {
	Agnhost string // agnhost; upstream busybox, sample-apiserver and porter's certificate beside it
	Etcd    string // etcd at the cluster's version (the aggregator spec runs it beside sample-apiserver)
}

// e2eCatalogue builds the e2e images on the fixture busybox. agnhost is the real program
// (static, from test/images/agnhost at the cluster's version); upstream's image is alpine
// with curl, dig, nc, bash and iperf added: here are the host's curl, OpenBSD nc, dig, getent
// and bash and busybox's applets (wget, nslookup), no iperf.
func e2eCatalogue(b *fixture.Builder, bins e2eBinaries, nnp []byte) ([]Image, error) {
	agnhostPath := bins.Agnhost
	agnhost, err := os.ReadFile(agnhostPath)
	if err != nil {
		return nil, fmt.Errorf("read agnhost: %w", err)
	}
	busybox, err := os.ReadFile(fixture.DefaultBusybox)
	if err != nil {
		return nil, fmt.Errorf("read busybox for /bin/ls: %w", err)
	}
	pause, err := b.Busybox(append(baseOpts(etcFiles("", ""), busybox), append(pauseOpts(), kind("pause-3.10.2"))...)...)
	if err != nil {
		return nil, fmt.Errorf("build pause: %w", err)
	}
	agnFiles, err := agnhostFiles(agnhost, filepath.Dir(agnhostPath))
	if err != nil {
		return nil, err
	}
	// fake-registry-server serves /var/registry; upstream's image has pause:3.10.2 there
	// as pause:testing (the private-registry pull specs pull localhost:5000/pause:testing).
	regFiles, err := fakeRegistryFiles("pause", "testing", pause)
	if err != nil {
		return nil, err
	}
	agnFiles = append(agnFiles, regFiles...)
	// What upstream's agnhost image adds to alpine and specs run, the host's with their
	// libraries (busybox has none of them): curl (lifecycle hooks, Services, HostPort); bash
	// (the probe specs' containers); OpenBSD's nc as /usr/bin/nc, which PATH finds before
	// busybox's /bin/nc: the networking specs send UDP with `nc -w 1 -u IP PORT`, which
	// alpine's busybox nc takes and the host's Debian busybox nc does not.
	tools, err := hostBinaries(map[string]string{hostCurl: "/usr/bin/curl", hostNc: "/usr/bin/nc", hostBash: "/bin/bash"})
	if err != nil {
		return nil, fmt.Errorf("agnhost's tools: %w", err)
	}
	agnFiles = append(agnFiles, tools...)
	// The DNS specs' queriers run `dig +search` and `getent hosts` in agnhost (alpine's
	// bind-tools and musl's getent upstream) and in glibc-dns-testing (Debian's dnsutils).
	dns, err := hostBinaries(map[string]string{hostDig: "/usr/bin/dig", hostGetent: "/usr/bin/getent"})
	if err != nil {
		return nil, fmt.Errorf("the DNS specs' tools: %w", err)
	}
	agnFiles = append(agnFiles, dns...)
	// Upstream's agnhost, kitten and nautilus are alpine images: the ImageVolume spec reads the
	// base layer's /etc/os-release through an image volume and looks for "Alpine Linux".
	agnFiles = append(agnFiles, fixture.Reg("/etc/os-release", agnhostOSRelease, 0o644))
	agnhostOpts := func(k string, extra ...fixture.Option) []fixture.Option {
		return append([]fixture.Option{kind(k), fixture.WithFiles(agnFiles...),
			fixture.WithEntrypoint("/agnhost"), fixture.WithCmd("pause")}, extra...)
	}
	type spec struct {
		refs []string
		how  string
		etc  []fixture.File
		opts []fixture.Option
	}
	// glibc-dns-testing is Debian with dnsutils: specs run its glibc hostname (-f resolves
	// through glibc's getaddrinfo); the host's Debian hostname stands in, no dig.
	hostname, err := fixture.HostBinary(hostHostname, "/bin/hostname")
	if err != nil {
		return nil, fmt.Errorf("glibc-dns-testing's hostname: %w", err)
	}
	sampleAPI, err := os.ReadFile(filepath.Join(filepath.Dir(agnhostPath), sampleAPIServer))
	if err != nil {
		return nil, fmt.Errorf("read sample-apiserver: %w", err)
	}
	etcd, err := os.ReadFile(bins.Etcd)
	if err != nil {
		return nil, fmt.Errorf("read etcd: %w", err)
	}
	withUser := etcFiles("user-defined-in-image:x:1000:1000:Linux User,,,:/home/user-defined-in-image:/bin/sh\n",
		"user-defined-in-image:x:1000:\ngroup-defined-in-image:x:50000:user-defined-in-image\n")
	specs := []spec{
		{[]string{e2e + "agnhost:2.66.1"},
			"the real agnhost (test/images/agnhost at the cluster's version) at /agnhost and /agnhost-2, " +
				"porter's localhost.crt/key, /uploads, user-defined-in-image (1000) in group-defined-in-image (50000), " +
				"pause:3.10.2's stand-in as pause:testing in /var/registry (fake-registry-server), the host's curl, OpenBSD nc (-u), dig, getent and bash; " +
				"busybox instead of alpine (no iperf, socat)",
			withUser, agnhostOpts("e2e-agnhost")},
		{[]string{e2e + "agnhost:2.55"},
			"as agnhost:2.66.1 (the previous version's image, used by version-skew specs), another digest",
			withUser, agnhostOpts("e2e-agnhost-prev")},
		{[]string{e2e + "kitten:1.8"},
			"agnhost with CMD test-webserver and /kitten.jpg, /data.json", withUser,
			agnhostOpts("e2e-kitten", fixture.WithCmd("test-webserver"), fixture.WithFiles(
				fixture.Reg("/kitten.jpg", "kitten\n", 0o644), fixture.Reg("/data.json", `{"image": "kitten.jpg"}`+"\n", 0o644)))},
		{[]string{e2e + "nautilus:1.8"},
			"agnhost with CMD test-webserver and /nautilus.jpg, /data.json", withUser,
			agnhostOpts("e2e-nautilus", fixture.WithCmd("test-webserver"), fixture.WithFiles(
				fixture.Reg("/nautilus.jpg", "nautilus\n", 0o644), fixture.Reg("/data.json", `{"image": "nautilus.jpg"}`+"\n", 0o644)))},
		{[]string{e2e + "glibc-dns-testing:2.1.1"}, "busybox with the host's glibc /bin/hostname, dig and getent", nil,
			[]fixture.Option{kind("e2e-glibc-dns-testing"), fixture.WithFiles(append(hostname, dns...)...)}},
		{[]string{e2e + "busybox:1.37.0-2"}, "upstream busybox 1.37.0 (built from its release, without Debian's patches) " +
			"with upstream busybox users", nil,
			[]fixture.Option{kind("e2e-busybox-1.37"), fixture.WithBusybox(filepath.Join(filepath.Dir(agnhostPath), upstreamBusybox))}},
		{[]string{e2e + "nginx:1.27.0-2"}, "busybox httpd on :80 as nginx (see nginx:1.14-2)", nil, nginxOpts("e2e-nginx-1.27", 80)},
		{[]string{e2e + "nginx:1.28.0-2"}, "as nginx:1.27.0-2, another digest (rolling-update specs change to it)", nil,
			nginxOpts("e2e-nginx-1.28", 80)},
		{[]string{e2e + "nonewprivs:1.4"}, "as nonewprivs:1.3: setuid-root nnp printing 'Effective uid: N', CMD nnp", nil,
			[]fixture.Option{kind("nonewprivs-1.4"), fixture.WithCmd("nnp"),
				fixture.WithFiles(fixture.File{Path: "/usr/local/bin/nnp", Data: nnp, Mode: os.ModeSetuid | 0o755})}},
		{[]string{e2e + "nonroot:1.5"}, "busybox, User 1234", nil,
			[]fixture.Option{kind("nonroot"), fixture.WithUser("1234")}},
		{[]string{e2e + "sample-apiserver:1.29.2"},
			"k8s.io/sample-apiserver at the cluster's version as /sample-apiserver, its ENTRYPOINT (upstream's is 1.29's)", nil,
			[]fixture.Option{kind("e2e-sample-apiserver"), fixture.WithEntrypoint("/sample-apiserver"), fixture.WithCmd(),
				fixture.WithFiles(fixture.File{Path: "/sample-apiserver", Data: sampleAPI, Mode: 0o755})}},
		{[]string{"registry.k8s.io/etcd:3.7.0-0"}, "the cluster's etcd (3.7.0) as /usr/local/bin/etcd", nil,
			[]fixture.Option{kind("etcd"), fixture.WithFiles(fixture.File{Path: "/usr/local/bin/etcd", Data: etcd, Mode: 0o755})}},
	}
	out := make([]Image, 0, len(specs)+1)
	out = append(out, Image{Refs: []string{"registry.k8s.io/pause:3.10.2"},
		How: "as pause:3.9 (the e2e framework's pause image)", img: pause})
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
	return out, nil
}

// agnhostFiles are what upstream's agnhost Dockerfile adds to its base: the binary, its
// agnhost-2 alias (entrypoint-tester specs override the entrypoint with it), /uploads for
// netexec, and porter's serving certificate when it lies beside the binary.
func agnhostFiles(agnhost []byte, dir string) ([]fixture.File, error) {
	files := []fixture.File{
		{Path: "/agnhost", Data: agnhost, Mode: 0o755},
		fixture.Symlink("/agnhost-2", "agnhost"),
		fixture.Dir("/uploads", 0o755, 0, 0),
		fixture.Dir("/home/user-defined-in-image", 0o755, 1000, 1000),
	}
	for _, n := range []string{"localhost.crt", "localhost.key"} {
		b, err := os.ReadFile(filepath.Join(dir, agnhostPorterDir, n))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read agnhost porter %s: %w", n, err)
		}
		files = append(files, fixture.File{Path: "/" + n, Data: b, Mode: 0o644})
	}
	return files, nil
}

// fakeRegistryFiles lays img out the way agnhost's fake-registry-server reads it
// (fakeregistryserver/prepare_registry.sh): /var/registry/NAME/manifests/TAG holds the
// manifest digest, manifests and blobs live at <dir>/sha256/<2 hex>/<hex>/data.
func fakeRegistryFiles(name, tag string, img v1.Image) ([]fixture.File, error) {
	dir := "/var/registry/" + name
	at := func(sub string, h v1.Hash) string {
		return path.Join(dir, sub, h.Algorithm, h.Hex[:2], h.Hex, "data")
	}
	manifest, err := img.RawManifest()
	if err != nil {
		return nil, fmt.Errorf("fake registry %s: manifest: %w", name, err)
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("fake registry %s: digest: %w", name, err)
	}
	cfgName, err := img.ConfigName()
	if err != nil {
		return nil, fmt.Errorf("fake registry %s: config name: %w", name, err)
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return nil, fmt.Errorf("fake registry %s: config: %w", name, err)
	}
	files := []fixture.File{
		{Path: path.Join(dir, "manifests", tag), Data: []byte(digest.String() + "\n"), Mode: 0o644},
		{Path: at("manifests", digest), Data: manifest, Mode: 0o644},
		{Path: at("blobs", cfgName), Data: cfg, Mode: 0o644},
	}
	layers, err := img.Layers()
	if err != nil {
		return nil, fmt.Errorf("fake registry %s: layers: %w", name, err)
	}
	for _, l := range layers {
		h, err := l.Digest()
		if err != nil {
			return nil, fmt.Errorf("fake registry %s: layer digest: %w", name, err)
		}
		b, err := compressed(l)
		if err != nil {
			return nil, fmt.Errorf("fake registry %s: layer %s: %w", name, h, err)
		}
		files = append(files, fixture.File{Path: at("blobs", h), Data: b, Mode: 0o644})
	}
	return files, nil
}

func compressed(l v1.Layer) ([]byte, error) {
	rc, err := l.Compressed()
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	return io.ReadAll(rc)
}

// hostBinaries is fixture.HostBinary for several host binaries (src -> dest in the image).
func hostBinaries(bins map[string]string) ([]fixture.File, error) {
	var files []fixture.File
	for src, dest := range bins {
		f, err := fixture.HostBinary(src, dest)
		if err != nil {
			return nil, err
		}
		files = append(files, f...)
	}
	return files, nil
}
