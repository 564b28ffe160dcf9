package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
)

// imageVolEnv is a test env whose spec generator records the image volumes it was given.
func imageVolEnv(t *testing.T) (*testEnv, *map[string]string) {
	e := newTestEnv(t)
	got := new(map[string]string)
	e.svc.Close() // one service per store
	svc, err := New(Options{
		Config: e.cfg, Images: struct{ ImageStore }{}, ContainerImages: e.images, Shims: e.shims, Namespaces: e.ns,
		Cgroups: e.cg, Mounter: e.mounts, Network: e.net, ProcSys: e.procSys,
		ResolvConf: filepath.Join(filepath.Dir(e.cfg.Root), "resolv.conf"),
		GenerateSpec: func(id string, cfg *runtimeapi.ContainerConfig, sb spec.SandboxInfo, img spec.ImageConfig, opts spec.Options) (*specs.Spec, error) {
			*got = opts.ImageVolumes
			return e.generate(id, cfg, sb, img, opts)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	if err := svc.Recover(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.svc = svc
	return e, got
}

func imageVolConfig(name string, mounts ...*runtimeapi.Mount) *runtimeapi.ContainerConfig {
	c := containerConfig(name)
	c.Mounts = mounts
	return c
}

func TestImageVolume(t *testing.T) {
	e, got := imageVolEnv(t)
	ctx := context.Background()
	imageID := e.images.images[testImage].ID
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, imageVolConfig("c",
		&runtimeapi.Mount{ContainerPath: "/mnt/vol/", Readonly: true, Image: &runtimeapi.ImageSpec{Image: testImage}}))

	// Leased under its own owner name, staged under the bundle, handed to the spec.
	owner := id + "/imagevol/0"
	if e.images.leases[owner] != imageID || e.images.leases[id] != imageID {
		t.Errorf("leases = %v, want the container's and %s on %s", e.images.leases, owner, imageID)
	}
	staged := filepath.Join(e.svc.bundleDir(id), "imagevol", "0")
	if _, ok := e.mounts.mounts[staged]; !ok {
		t.Errorf("image volume not mounted at %s: %v", staged, e.mounts.mounts)
	}
	if (*got)["/mnt/vol"] != staged {
		t.Errorf("spec image volumes = %v, want /mnt/vol -> %s", *got, staged)
	}
	st, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if ms := st.Status.Mounts; len(ms) != 1 || ms[0].GetImage().GetImageRef() != imageID || ms[0].GetImage().GetImage() != testImage {
		t.Errorf("status mounts = %v, want the image volume with image_ref %s", ms, imageID)
	}

	// Removal releases the lease and the staging mount with the container.
	if _, err := e.svc.RemoveContainer(ctx, &runtimeapi.RemoveContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.images.leases[owner]; ok {
		t.Errorf("image volume lease left after remove")
	}
	if _, ok := e.mounts.mounts[staged]; ok {
		t.Errorf("image volume mount left after remove")
	}
	removePod(t, e, podID)
	e.assertNothingLeft(t)
}

func TestImageVolumeRefused(t *testing.T) {
	tests := []struct {
		name  string
		mount *runtimeapi.Mount
		want  error
	}{
		{"writable", &runtimeapi.Mount{ContainerPath: "/v", Image: &runtimeapi.ImageSpec{Image: testImage}}, errdefs.ErrInvalidArgument},
		{"unknown image", &runtimeapi.Mount{ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: "missing:1"}}, errdefs.ErrNotFound},
		{"missing sub path", &runtimeapi.Mount{ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: testImage}, ImageSubPath: "nope"}, errdefs.ErrNotFound},
		{"escaping sub path", &runtimeapi.Mount{ContainerPath: "/v", Readonly: true, Image: &runtimeapi.ImageSpec{Image: testImage}, ImageSubPath: "../x"}, errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, _ := imageVolEnv(t)
			pod := podConfig("p")
			podID := e.runPod(t, pod)
			_, err := e.svc.CreateContainer(context.Background(), &runtimeapi.CreateContainerRequest{
				PodSandboxId: podID, Config: imageVolConfig("c", tt.mount), SandboxConfig: pod,
			})
			if !errors.Is(err, tt.want) {
				t.Fatalf("CreateContainer = %v, want %v", err, tt.want)
			}
			removePod(t, e, podID)
			e.assertNothingLeft(t) // rolled back: no lease, mount or directory
		})
	}
}

func TestImageSubPath(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	// A symlink pointing out of the image resolves inside it.
	if err := os.Symlink("/etc", filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sub, want string
		err       error
	}{
		{"", dir, nil},
		{"etc", filepath.Join(dir, "etc"), nil},
		{"link", filepath.Join(dir, "etc"), nil},
		{"missing", "", errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.sub, func(t *testing.T) {
			got, err := imageSubPath(dir, tt.sub)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("imageSubPath(%q) = %q, %v; want %v", tt.sub, got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want || !strings.HasPrefix(got, dir) {
				t.Fatalf("imageSubPath(%q) = %q, %v; want %q", tt.sub, got, err, tt.want)
			}
		})
	}
}

func removePod(t *testing.T, e *testEnv, id string) {
	t.Helper()
	if _, err := e.svc.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatalf("RemovePodSandbox: %v", err)
	}
}
