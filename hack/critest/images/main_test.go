package main

import (
	"archive/tar"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	ggcr "github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/berth-runtime/berth/pkg/images/reference"
	"github.com/berth-runtime/berth/pkg/images/remote"
	"github.com/berth-runtime/berth/test/fixture"
)

// critestRefs is every image reference critest v1.37.0 pulls on linux (after its
// PrepareImageName adds :latest), from pkg/validate, pkg/framework and pkg/benchmark.
var critestRefs = []string{
	"registry.k8s.io/e2e-test-images/busybox:1.29-2",
	"registry.k8s.io/e2e-test-images/nginx:1.14-2",
	"registry.k8s.io/e2e-test-images/httpd:2.4.39-4",
	"registry.k8s.io/e2e-test-images/nonewprivs:1.3",
	"registry.k8s.io/pause:3.9",
	"k8s.gcr.io/pause:3.9",
	"gcr.io/k8s-staging-cri-tools/hostnet-nginx-" + runtime.GOARCH + ":latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-uid-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-user-username-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-latest:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:test",
	"gcr.io/k8s-staging-cri-tools/test-image-tag:all",
	"gcr.io/k8s-staging-cri-tools/test-image-digest@" + PinnedDigest,
	"gcr.io/k8s-staging-cri-tools/test-image-1:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-2:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-3:latest",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:1",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:2",
	"gcr.io/k8s-staging-cri-tools/test-image-tags:3",
	"public.ecr.aws/docker/library/busybox:1.35.0-glibc",
	"public.ecr.aws/docker/library/busybox:1-uclibc",
	"public.ecr.aws/docker/library/busybox:1",
	"public.ecr.aws/docker/library/busybox:1-glibc",
	"public.ecr.aws/docker/library/busybox:1-musl",
}

func testCatalogue(t *testing.T) []Image {
	t.Helper()
	nnp, err := buildNNP("go")
	if err != nil {
		t.Fatal(err)
	}
	imgs, err := catalogue(new(fixture.Builder), nnp)
	if err != nil {
		t.Fatal(err)
	}
	return imgs
}

func findImage(t *testing.T, imgs []Image, ref string) Image {
	t.Helper()
	for _, im := range imgs {
		if slices.Contains(im.Refs, ref) {
			return im
		}
	}
	t.Fatalf("%s is not in the catalogue", ref)
	return Image{}
}

func digestOf(t *testing.T, imgs []Image, ref string) v1.Hash {
	t.Helper()
	d, err := findImage(t, imgs, ref).img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestCatalogueCoversCritest(t *testing.T) {
	imgs := testCatalogue(t)
	pinned := map[string]bool{}
	for _, p := range PinnedRefs() {
		pinned[p.Ref] = true
	}
	for _, ref := range critestRefs {
		if pinned[ref] {
			continue
		}
		findImage(t, imgs, ref)
	}
	for _, d := range Domains(imgs) {
		if !slices.Contains(MirroredHosts, d) {
			t.Errorf("catalogue domain %s has no mirror", d)
		}
	}
}

func TestDigests(t *testing.T) {
	imgs := testCatalogue(t)
	const ct = "gcr.io/k8s-staging-cri-tools/"
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{"tags 1 and 2 share an image", ct + "test-image-tags:1", ct + "test-image-tags:2", true},
		{"tags 1 and 3 share an image", ct + "test-image-tags:1", ct + "test-image-tags:3", true},
		{"pause on two registries is one image", "registry.k8s.io/pause:3.9", "k8s.gcr.io/pause:3.9", true},
		{"test-image-1 and 2 differ", ct + "test-image-1:latest", ct + "test-image-2:latest", false},
		{"test-image-2 and 3 differ", ct + "test-image-2:latest", ct + "test-image-3:latest", false},
		{"tag test and all differ", ct + "test-image-tag:test", ct + "test-image-tag:all", false},
		{"digest image differs from tags", ct + "test-image-digest:latest", ct + "test-image-tags:1", false},
		{"user images differ", ct + "test-image-user-uid:latest", ct + "test-image-user-username:latest", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := digestOf(t, imgs, tt.a) == digestOf(t, imgs, tt.b); got != tt.same {
				t.Errorf("same digest = %v, want %v", got, tt.same)
			}
		})
	}
	seen := map[v1.Hash]string{}
	for _, im := range imgs {
		d, _ := im.img.Digest()
		if other, ok := seen[d]; ok {
			t.Errorf("%s and %s are separate catalogue entries with one digest", other, im.Refs[0])
		}
		seen[d] = im.Refs[0]
	}
}

func TestImageConfigs(t *testing.T) {
	imgs := testCatalogue(t)
	const ct = "gcr.io/k8s-staging-cri-tools/"
	tests := []struct {
		ref        string
		user       string
		entrypoint []string
		cmd        []string
	}{
		{ct + "test-image-user-uid:latest", "1002", nil, []string{"sh"}},
		{ct + "test-image-user-username:latest", "www-data", nil, []string{"sh"}},
		{ct + "test-image-user-uid-group:latest", "1003:1004", nil, []string{"sh"}},
		{ct + "test-image-user-username-group:latest", "www-data:1004", nil, []string{"sh"}},
		{ct + "test-image-predefined-group:latest", "1000", nil, []string{"sh"}},
		{"registry.k8s.io/e2e-test-images/busybox:1.29-2", "", nil, []string{"sh"}},
		{"registry.k8s.io/e2e-test-images/nonewprivs:1.3", "1000", []string{"/usr/local/bin/nnp"}, nil},
		{"registry.k8s.io/pause:3.9", "65535:65535", []string{"/pause"}, nil},
		{"registry.k8s.io/e2e-test-images/nginx:1.14-2", "", []string{"/docker-entrypoint.sh"}, []string{"nginx: master process nginx -g daemon off;"}},
		{"registry.k8s.io/e2e-test-images/httpd:2.4.39-4", "", nil, []string{"httpd-foreground"}},
	}
	for _, tt := range tests {
		t.Run(tt.ref, func(t *testing.T) {
			cf, err := findImage(t, imgs, tt.ref).img.ConfigFile()
			if err != nil {
				t.Fatal(err)
			}
			c := cf.Config
			if c.User != tt.user || !slices.Equal(c.Entrypoint, tt.entrypoint) || !slices.Equal(c.Cmd, tt.cmd) {
				t.Errorf("user %q entrypoint %q cmd %q, want %q %q %q", c.User, c.Entrypoint, c.Cmd, tt.user, tt.entrypoint, tt.cmd)
			}
		})
	}
}

func TestMirrorsResolveThroughBerth(t *testing.T) {
	dir := t.TempDir()
	const addr = "127.0.0.1:45678"
	if err := WriteMirrors(dir, addr); err != nil {
		t.Fatal(err)
	}
	for _, host := range MirroredHosts {
		t.Run(host, func(t *testing.T) {
			hosts, err := remote.Config{CertsDir: dir}.Hosts(host)
			if err != nil {
				t.Fatal(err)
			}
			if len(hosts) != 2 {
				t.Fatalf("hosts = %v, want the mirror then the upstream", hosts)
			}
			m, up := hosts[0], hosts[1]
			if !m.Mirror || m.Scheme != "http" || m.Host != addr || !m.Capabilities.Pull || !m.Capabilities.Resolve {
				t.Errorf("mirror = %+v", m)
			}
			if up.Mirror || up.Capabilities.Pull || up.Capabilities.Resolve {
				t.Errorf("upstream %s may still be pulled from: %+v", up, up)
			}
		})
	}
}

// TestImagesRun pulls the images back through the mirrors and runs them with chroot to
// show the properties critest relies on hold.
func TestImagesRun(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for chroot")
	}
	imgs := testCatalogue(t)
	reg := fixture.StartRegistryT(t)
	if _, err := pushAll(reg, imgs); err != nil {
		t.Fatal(err)
	}
	certs := t.TempDir()
	if err := WriteMirrors(certs, reg.Addr()); err != nil {
		t.Fatal(err)
	}
	root := func(t *testing.T, ref string) string { return pullRootfs(t, certs, ref) }

	t.Run("busybox users and applets", func(t *testing.T) {
		r := root(t, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
		expectOutput(t, r, nil, "65534\n", "id", "-u", "nobody")
		expectOutput(t, r, &syscall.Credential{Uid: 65534, Gid: 65534}, "nobody\n", "id", "-nu")
		expectOutput(t, r, &syscall.Credential{Uid: 1001, Gid: 1002}, "1001:1002\n", "sh", "-c", "echo $(id -u):$(id -g)")
		expectOutput(t, r, nil, "", "sh", "-c", "pgrep sleep || true")
		// A mask over /bin/ls (a /dev/null bind) must not follow a symlink onto busybox.
		if fi, err := os.Lstat(filepath.Join(r, "bin/ls")); err != nil || !fi.Mode().IsRegular() {
			t.Errorf("/bin/ls is not a regular file (mode %v, err %v)", fi.Mode(), err)
		}
		expectOutput(t, r, nil, "/bin\n", "ls", "-d", "/bin")
	})
	t.Run("pgrep and ipcs", func(t *testing.T) {
		r := root(t, "registry.k8s.io/e2e-test-images/busybox:1.29-2")
		out := runWithProc(t, r, "sleep 30 & pgrep sleep; kill $!")
		if strings.TrimSpace(out) == "" {
			t.Errorf("pgrep sleep found nothing")
		}
		id := makeShm(t)
		if out := runWithProc(t, r, "ipcs -m"); !strings.Contains(out, " "+id+" ") {
			t.Errorf("ipcs -m does not list segment %s:\n%s", id, out)
		}
	})
	t.Run("user images", func(t *testing.T) {
		r := root(t, "gcr.io/k8s-staging-cri-tools/test-image-user-username:latest")
		expectOutput(t, r, nil, "33\n", "id", "-u", "www-data")
		r = root(t, "gcr.io/k8s-staging-cri-tools/test-image-predefined-group:latest")
		expectOutput(t, r, nil, "1000 50000\n", "id", "-G", "default-user")
		expectOutput(t, r, nil, "default-user group-defined-in-image\n", "id", "-Gn", "default-user")
	})
	t.Run("nonewprivs", func(t *testing.T) {
		r := root(t, "registry.k8s.io/e2e-test-images/nonewprivs:1.3")
		user := &syscall.Credential{Uid: 1000, Gid: 1000}
		expectOutput(t, r, user, "Effective uid: 0\n", "/usr/local/bin/nnp")
		expectOutput(t, r, user, "Effective uid: 1000\n", "setpriv", "--nnp", "/usr/local/bin/nnp")
	})
	t.Run("nginx", func(t *testing.T) {
		r := root(t, "registry.k8s.io/e2e-test-images/nginx:1.14-2")
		port := freePort(t)
		cmd, out := startEntrypoint(t, r, imageOf(t, imgs, "registry.k8s.io/e2e-test-images/nginx:1.14-2"), "NGINX_PORT="+port)
		expectPage(t, "http://127.0.0.1:"+port+"/", "Welcome to nginx", out)
		pidData, err := os.ReadFile(filepath.Join(r, "var/run/nginx.pid"))
		if err != nil {
			t.Fatal(err)
		}
		pid := strings.TrimSpace(string(pidData))
		if comm, _ := os.ReadFile("/proc/" + pid + "/comm"); strings.TrimSpace(string(comm)) != "nginx" {
			t.Errorf("pid %s from nginx.pid has comm %q, want nginx", pid, comm)
		}
		if out := runWithProc(t, r, "pidof nginx"); !slices.Contains(strings.Fields(out), pid) {
			t.Errorf("pidof nginx = %q, want it to include %s", out, pid)
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", cmd.Process.Pid))
		if !strings.Contains(string(cmdline), "master process") {
			t.Errorf("entrypoint cmdline %q lacks 'master process'", cmdline)
		}
		stopGracefully(t, cmd)
		if _, err := os.Stat("/proc/" + pid); err == nil {
			t.Errorf("httpd %s survived SIGTERM of the entrypoint", pid)
		}
	})
	t.Run("httpd", func(t *testing.T) {
		ref := "registry.k8s.io/e2e-test-images/httpd:2.4.39-4"
		r := root(t, ref)
		port := freePort(t)
		cmd, out := startEntrypoint(t, r, imageOf(t, imgs, ref), "HTTPD_PORT="+port)
		expectPage(t, "http://127.0.0.1:"+port+"/", "It works!", out)
		stopGracefully(t, cmd)
		if !strings.Contains(out.String(), "httpd") {
			t.Errorf("log %q does not mention httpd", out.String())
		}
	})
	t.Run("pause", func(t *testing.T) {
		ref := "k8s.gcr.io/pause:3.9"
		r := root(t, ref)
		cmd, _ := startEntrypoint(t, r, imageOf(t, imgs, ref))
		time.Sleep(200 * time.Millisecond)
		if cmd.ProcessState != nil {
			t.Fatalf("pause exited early: %v", cmd.ProcessState)
		}
		stopGracefully(t, cmd)
	})
}

func imageOf(t *testing.T, imgs []Image, ref string) v1.Image { return findImage(t, imgs, ref).img }

// pullRootfs resolves ref through the mirrors as berth does, pulls it and unpacks the
// flattened filesystem into a temp dir.
func pullRootfs(t *testing.T, certs, ref string) string {
	t.Helper()
	r, err := reference.Parse(ref)
	if err != nil {
		t.Fatal(err)
	}
	hosts, err := remote.Config{CertsDir: certs}.Hosts(r.Domain)
	if err != nil {
		t.Fatal(err)
	}
	h := hosts[0]
	n, err := name.ParseReference(h.Host+"/"+r.Path+":"+r.Tag, name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	img, err := ggcr.Image(n)
	if err != nil {
		t.Fatalf("pull %s via %s: %v", ref, h, err)
	}
	dir := t.TempDir()
	if err := untar(mutate.Extract(img), dir); err != nil {
		t.Fatalf("unpack %s: %v", ref, err)
	}
	return dir
}

func untar(rc io.ReadCloser, dir string) error {
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		p := filepath.Join(dir, filepath.Clean("/"+h.Name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		mode := os.FileMode(h.Mode).Perm()
		switch h.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(p, mode); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(h.Linkname, p); err != nil {
				return err
			}
			continue
		case tar.TypeReg:
			f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, mode)
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			continue
		}
		if err := os.Lchown(p, h.Uid, h.Gid); err != nil {
			return err
		}
		// chown clears setuid; restore the full mode afterwards.
		if err := os.Chmod(p, fileMode(h.Mode)); err != nil {
			return err
		}
	}
}

func fileMode(m int64) os.FileMode {
	mode := os.FileMode(m).Perm()
	if m&0o4000 != 0 {
		mode |= os.ModeSetuid
	}
	if m&0o2000 != 0 {
		mode |= os.ModeSetgid
	}
	if m&0o1000 != 0 {
		mode |= os.ModeSticky
	}
	return mode
}

// chrootCmd runs args in root, in a private mount namespace (so /proc can be mounted there
// without touching the host's mounts) and its own process group (so leftovers can be killed).
func chrootCmd(root string, cred *syscall.Credential, args ...string) *exec.Cmd {
	bin := args[0]
	if !strings.HasPrefix(bin, "/") {
		bin = "/bin/" + bin // every applet of the fixture busybox is in /bin
	}
	cmd := &exec.Cmd{Path: bin, Args: args}
	cmd.Env = []string{fixture.DefaultPath}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:       root,
		Unshareflags: syscall.CLONE_NEWNS,
		Setpgid:      true,
		Credential:   cred,
	}
	return cmd
}

func expectOutput(t *testing.T, root string, cred *syscall.Credential, want string, args ...string) {
	t.Helper()
	cmd := chrootCmd(root, cred, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil || string(out) != want || stderr.Len() > 0 {
		t.Errorf("%q: out %q err %v stderr %q, want out %q", args, out, err, stderr.String(), want)
	}
}

// setupMounts gives the chroot the /proc and /dev/null a runtime would.
const setupMounts = "{ mount -t proc proc /proc && mount -t tmpfs tmpfs /dev && mknod -m 666 /dev/null c 1 3; } || exit 99; "

// runWithProc runs script as root with /proc and /dev/null in the chroot.
func runWithProc(t *testing.T, root, script string) string {
	t.Helper()
	cmd := chrootCmd(root, nil, "/bin/sh", "-c", setupMounts+script)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("%q: %v: %s", script, err, out)
	}
	return string(out)
}

// startEntrypoint runs the image's entrypoint and cmd with /proc mounted, as the image's
// config says, and kills its process group when the test ends.
func startEntrypoint(t *testing.T, root string, img v1.Image, env ...string) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	args := append(append([]string{}, cf.Config.Entrypoint...), cf.Config.Cmd...)
	cmd := chrootCmd(root, nil, append([]string{"/bin/sh", "-c", setupMounts + `exec "$@"`, "sh"}, args...)...)
	cmd.Env = append(cf.Config.Env, env...)
	cmd.Dir = "/"
	if cf.Config.WorkingDir != "" {
		cmd.Dir = cf.Config.WorkingDir
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %q: %v", args, err)
	}
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if cmd.ProcessState == nil {
			_ = cmd.Wait()
		}
	})
	return cmd, &out
}

func stopGracefully(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Errorf("still running 5s after SIGTERM")
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	}
}

func expectPage(t *testing.T, url, want string, log *bytes.Buffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(url)
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
				t.Errorf("GET %s: %d %q, want 200 with %q", url, resp.StatusCode, body, want)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: %v; server log:\n%s", url, err, log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// makeShm creates a host SysV shared memory segment and removes it when the test ends.
func makeShm(t *testing.T) string {
	t.Helper()
	id, _, errno := syscall.Syscall(syscall.SYS_SHMGET, 0 /* IPC_PRIVATE */, 4096, 0o600|0o1000 /* IPC_CREAT */)
	if errno != 0 {
		t.Fatalf("shmget: %v", errno)
	}
	t.Cleanup(func() {
		_, _, _ = syscall.Syscall(syscall.SYS_SHMCTL, id, 0 /* IPC_RMID */, 0)
	})
	return strconv.Itoa(int(id))
}
