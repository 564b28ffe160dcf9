package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-runtime/berth/test/fixture"
)

func pull(t *testing.T, a *agent, ref string) string {
	t.Helper()
	resp, err := a.img.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("pull %s: %v", ref, err)
	}
	return resp.ImageRef
}

func imageStatus(t *testing.T, a *agent, ref string) *runtimeapi.Image {
	t.Helper()
	resp, err := a.img.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if err != nil {
		t.Fatalf("image status %s: %v", ref, err)
	}
	return resp.Image
}

func TestImagePullStatusListRemove(t *testing.T) {
	a := newAgent(t, agentOptions{})
	ref := env.images.busybox
	id := pull(t, a, ref)
	if !strings.HasPrefix(id, "sha256:") {
		t.Fatalf("image ref %q is not a config digest", id)
	}
	img := imageStatus(t, a, ref)
	if img == nil || img.Id != id {
		t.Fatalf("image status of %s = %v, want id %s", ref, img, id)
	}
	if !slices.Contains(img.RepoTags, ref) {
		t.Errorf("repo tags %v lack %s", img.RepoTags, ref)
	}
	if len(img.RepoDigests) != 1 || !strings.Contains(img.RepoDigests[0], "@sha256:") {
		t.Errorf("repo digests = %v, want one name@digest", img.RepoDigests)
	}
	if img.Size == 0 {
		t.Error("image size is 0")
	}
	// The image is reachable by id, by id prefix and by digest reference too.
	for _, alt := range []string{id, strings.TrimPrefix(id, "sha256:")[:12], img.RepoDigests[0]} {
		if got := imageStatus(t, a, alt); got == nil || got.Id != id {
			t.Errorf("image status by %q = %v, want id %s", alt, got, id)
		}
	}
	verbose, err := a.img.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: ref}, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		ImageSpec struct {
			Config struct{ Env []string } `json:"config"`
		} `json:"imageSpec"`
	}
	if err := json.Unmarshal([]byte(verbose.Info["info"]), &info); err != nil || len(info.ImageSpec.Config.Env) == 0 {
		t.Errorf("verbose info lacks the image config (err %v): %q", err, verbose.Info["info"])
	}

	list, err := a.img.ListImages(ctxT(t), &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Images) != 1 || list.Images[0].Id != id {
		t.Fatalf("list = %v, want just %s", list.Images, id)
	}

	for i := 0; i < 2; i++ { // the second remove must succeed too
		if _, err := a.img.RemoveImage(ctxT(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}); err != nil {
			t.Fatalf("remove %d: %v", i, err)
		}
	}
	if img := imageStatus(t, a, ref); img != nil {
		t.Fatalf("image still present after remove: %v", img)
	}
}

func TestImagePullErrors(t *testing.T) {
	a := env.shared
	tests := []struct {
		name string
		ref  string
		want codes.Code
	}{
		{"malformed", "Not A Reference!", codes.InvalidArgument},
		{"unknown repository", env.registry.Ref("berth/nope:latest"), codes.NotFound},
		{"unknown tag", env.registry.Ref("berth/busybox:nope"), codes.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.img.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tt.ref}})
			if status.Code(err) != tt.want {
				t.Fatalf("pull %q: code %s (%v), want %s", tt.ref, status.Code(err), err, tt.want)
			}
			if !strings.Contains(err.Error(), strings.Split(tt.ref, "!")[0]) && tt.name != "malformed" {
				t.Errorf("error %q does not name %q", err, tt.ref)
			}
		})
	}
	// An image written as a URL with a password: refused, and the password is not echoed
	// back (the kubelet shows this error in pod events).
	ref := "https://alice:s3cr3tPassw0rd@" + env.registry.Ref("berth/busybox:latest")
	_, err := a.img.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
	if status.Code(err) != codes.InvalidArgument || strings.Contains(err.Error(), "s3cr3tPassw0rd") {
		t.Errorf("pull %q: %v, want InvalidArgument without the password", ref, err)
	}
}

// Two tags of one image are one image; removing it by one tag removes both.
func TestImageTagsShareOneImage(t *testing.T) {
	a := newAgent(t, agentOptions{})
	img, err := fixture.BuildBusybox()
	if err != nil {
		t.Fatal(err)
	}
	for _, tag := range []string{"berth/tags:one", "berth/tags:two"} {
		if _, err := env.registry.Push(tag, img); err != nil {
			t.Fatal(err)
		}
	}
	one, two := env.registry.Ref("berth/tags:one"), env.registry.Ref("berth/tags:two")
	if id1, id2 := pull(t, a, one), pull(t, a, two); id1 != id2 {
		t.Fatalf("same image got two ids %s %s", id1, id2)
	}
	got := imageStatus(t, a, one)
	if !slices.Contains(got.RepoTags, one) || !slices.Contains(got.RepoTags, two) {
		t.Fatalf("repo tags = %v, want both %s and %s", got.RepoTags, one, two)
	}
	if _, err := a.img.RemoveImage(ctxT(t), &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: two}}); err != nil {
		t.Fatal(err)
	}
	if imageStatus(t, a, one) != nil {
		t.Fatal("removing one tag left the image under the other tag")
	}
}

func TestImageMultiArchPicksHostPlatform(t *testing.T) {
	a := newAgent(t, agentOptions{})
	id := pull(t, a, env.images.multiarch)
	verbose, err := a.img.ImageStatus(ctxT(t), &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: id}, Verbose: true})
	if err != nil || verbose.Image == nil {
		t.Fatalf("status: %v", err)
	}
	var info struct {
		ImageSpec struct {
			Architecture string `json:"architecture"`
			OS           string `json:"os"`
		} `json:"imageSpec"`
	}
	if err := json.Unmarshal([]byte(verbose.Info["info"]), &info); err != nil {
		t.Fatal(err)
	}
	if got := info.ImageSpec.OS + "/" + info.ImageSpec.Architecture; got != fixture.HostPlatform() {
		t.Fatalf("pulled platform %s, want %s", got, fixture.HostPlatform())
	}
}

func TestImageFsInfo(t *testing.T) {
	a := newAgent(t, agentOptions{})
	before, err := a.img.ImageFsInfo(ctxT(t), &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	pull(t, a, env.images.busybox)
	after, err := a.img.ImageFsInfo(ctxT(t), &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	b, f := before.ImageFilesystems[0], after.ImageFilesystems[0]
	if f.FsId.GetMountpoint() == "" || f.Timestamp == 0 {
		t.Errorf("fs info lacks mountpoint or timestamp: %v", f)
	}
	if f.UsedBytes.GetValue() <= b.UsedBytes.GetValue() || f.InodesUsed.GetValue() <= b.InodesUsed.GetValue() {
		t.Errorf("usage did not grow with a pull: before %v after %v", b, f)
	}
}

// Images survive a SIGKILL of the agent.
func TestImagesSurviveAgentKill(t *testing.T) {
	a := newAgent(t, agentOptions{})
	id := pull(t, a, env.images.busybox)
	if err := a.kill9(); err != nil {
		t.Fatal(err)
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	if img := imageStatus(t, a, env.images.busybox); img == nil || img.Id != id {
		t.Fatalf("after restart image = %v, want %s", img, id)
	}
}

// `berth images import` loads an OCI layout tarball into a running agent.
func TestImageImport(t *testing.T) {
	a := newAgent(t, agentOptions{})
	img, err := fixture.BuildBusybox(fixture.WithLabel("imported", "yes"))
	if err != nil {
		t.Fatal(err)
	}
	tarPath := filepath.Join(t.TempDir(), "layout.tar")
	name := "registry.example/airgap/busybox:1.0"
	if err := fixture.OCIArchive(tarPath, map[string]v1.Image{name: img}); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(env.berthBin, append(a.extraArgs, "images", "import", tarPath)...).CombinedOutput()
	if err != nil {
		t.Fatalf("berth images import: %v\n%s", err, out)
	}
	got := imageStatus(t, a, name)
	if got == nil || !slices.Contains(got.RepoTags, name) {
		t.Fatalf("imported image not found as %s: %v (import said %s)", name, got, out)
	}
}

// The crictl walk-through of the images issue: pull, images, inspecti, rmi.
func TestCrictlImages(t *testing.T) {
	a := newAgent(t, agentOptions{})
	crictl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("crictl", append([]string{"--runtime-endpoint", "unix://" + a.sock, "--image-endpoint", "unix://" + a.sock, "--timeout", "60s"}, args...)...)
		cmd.Env = append(os.Environ(), "CRI_CONFIG_FILE=/dev/null")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("crictl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if _, err := exec.LookPath("crictl"); err != nil {
		t.Fatal("crictl is not installed: run `make deps`")
	}
	ref := env.images.busybox
	crictl("pull", ref)
	repo, tag, _ := strings.Cut(ref, ":latest")
	_ = tag
	if out := crictl("images"); !strings.Contains(out, repo) {
		t.Fatalf("crictl images lacks %s:\n%s", repo, out)
	}
	var inspect struct {
		Status struct {
			ID       string   `json:"id"`
			RepoTags []string `json:"repoTags"`
		} `json:"status"`
	}
	if err := json.Unmarshal([]byte(crictl("inspecti", "-o", "json", ref)), &inspect); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(inspect.Status.RepoTags, ref) {
		t.Fatalf("inspecti repo tags %v lack %s", inspect.Status.RepoTags, ref)
	}
	crictl("rmi", ref)
	if out := crictl("images", "-q"); strings.Contains(out, inspect.Status.ID) {
		t.Fatalf("image still listed after rmi:\n%s", out)
	}
}
