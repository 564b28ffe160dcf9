package e2e

import (
	"os"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Image volumes (CRI Mount.image): an image's filesystem mounted read-only into a container,
// whole or by image_sub_path, and the staging mount gone with the container.

func withImageVolume(image, containerPath, subPath string) ctrOption {
	return func(c *runtimeapi.ContainerConfig) {
		c.Mounts = append(c.Mounts, &runtimeapi.Mount{
			ContainerPath: containerPath, Readonly: true, ImageSubPath: subPath,
			Image: &runtimeapi.ImageSpec{Image: image},
		})
	}
}

func execIn(t *testing.T, a *agent, id string, cmd ...string) (string, int32) {
	t.Helper()
	resp, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd, Timeout: 30})
	if err != nil {
		t.Fatalf("exec %q: %v", cmd, err)
	}
	return string(resp.Stdout) + string(resp.Stderr), resp.ExitCode
}

func TestImageVolume(t *testing.T) {
	a := env.shared
	ref := pull(t, a, env.images.configured)
	p := runPod(t, a, podConfig(t, "imagevol"))
	id := runContainer(t, a, p, ctrConfig("whole", env.images.busybox, withCommand("sleep", "1000"),
		withImageVolume(ref, "/vol", "")))
	sub := runContainer(t, a, p, ctrConfig("sub", env.images.busybox, withCommand("sleep", "1000"),
		withImageVolume(ref, "/etcvol", "etc")))

	tests := []struct {
		name     string
		id       string
		cmd      []string
		wantCode int32 // -1: any failure
		wantOut  string
	}{
		{"image content visible", id, []string{"ls", "/vol/bin/busybox"}, 0, "/vol/bin/busybox"},
		{"binaries run (not noexec)", id, []string{"/vol/bin/busybox", "echo", "ran"}, 0, "ran"},
		{"read-only", id, []string{"touch", "/vol/x"}, -1, "Read-only file system"},
		{"sub path at the mount point", sub, []string{"cat", "/etcvol/passwd"}, 0, "root:x:0:0"},
		{"only the sub path", sub, []string{"ls", "/etcvol/etc"}, -1, "No such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, code := execIn(t, a, tt.id, tt.cmd...)
			if (tt.wantCode >= 0 && code != tt.wantCode) || (tt.wantCode < 0 && code == 0) || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("%q: exit %d output %q, want exit %d and %q", tt.cmd, code, out, tt.wantCode, tt.wantOut)
			}
		})
	}

	st := containerStatus(t, a, id)
	if ms := st.GetMounts(); len(ms) != 1 || ms[0].GetImage().GetImageRef() != ref {
		t.Errorf("status mounts %v, want the image volume with image_ref %s", ms, ref)
	}
	for _, c := range []string{id, sub} {
		if _, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: c, Timeout: 0}); err != nil {
			t.Fatal(err)
		}
		if _, err := a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: c}); err != nil {
			t.Fatal(err)
		}
	}
	mi, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(mi), "\n") {
		if strings.Contains(l, a.state) && strings.Contains(l, "imagevol") {
			t.Errorf("image volume still mounted after remove: %s", l)
		}
	}
}

func TestImageVolumeRefused(t *testing.T) {
	a := env.shared
	ref := pull(t, a, env.images.configured)
	p := runPod(t, a, podConfig(t, "imagevolbad"))
	writable := ctrConfig("writable", env.images.busybox, withCommand("true"), withImageVolume(ref, "/vol", ""))
	writable.Mounts[0].Readonly = false
	missing := ctrConfig("missing", env.images.busybox, withCommand("true"), withImageVolume(ref, "/vol", "not-there"))
	for _, cfg := range []*runtimeapi.ContainerConfig{writable, missing} {
		t.Run(cfg.Metadata.Name, func(t *testing.T) {
			_, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
			if err == nil {
				t.Fatal("created")
			}
		})
	}
}

// In a pod with a user namespace the image volume is idmapped like any bind mount: the
// image's root-owned files belong to the container's root.
func TestImageVolumeUserNamespace(t *testing.T) {
	a := env.shared
	ref := pull(t, a, env.images.configured)
	p := runPod(t, a, podConfig(t, "imagevoluserns", withUserNS(kubeletUserNS())))
	id := runContainer(t, a, p, ctrConfig("whole", env.images.busybox, withCommand("sleep", "1000"),
		withImageVolume(ref, "/vol", "")))
	if out, code := execIn(t, a, id, "stat", "-c", "%u:%g", "/vol/bin/busybox"); code != 0 || out != "0:0\n" {
		t.Errorf("owner of /vol/bin/busybox: exit %d %q, want 0:0", code, out)
	}
	if out, code := execIn(t, a, id, "/vol/bin/busybox", "echo", "ran"); code != 0 || out != "ran\n" {
		t.Errorf("run from the image volume: exit %d %q", code, out)
	}
}
