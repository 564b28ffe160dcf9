package e2e

import (
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestImageFsInfoContainerFilesystems: what a container writes to its writable layer shows in
// ImageFsInfo's container_filesystems (<root>/containers), which the kubelet's eviction
// manager watches; the image filesystem does not grow with it.
func TestImageFsInfoContainerFilesystems(t *testing.T) {
	a := newAgent(t, agentOptions{})
	const written = 8 << 20
	p := runPod(t, a, podConfig(t, "fsinfo"))
	before := imageFsInfo(t, a)
	runContainer(t, a, p, ctrConfig("writer", env.images.busybox, withShell("dd if=/dev/zero of=/big bs=1M count=8 && sync && sleep 1000")))
	// Layers are walked at most once per stats period (10s).
	deadline := time.Now().Add(40 * time.Second)
	for {
		after := imageFsInfo(t, a)
		if len(after.ContainerFilesystems) != 1 {
			t.Fatalf("container filesystems = %v, want one", after.ContainerFilesystems)
		}
		c := after.ContainerFilesystems[0]
		if c.FsId.GetMountpoint() != filepath.Join(a.root, "containers") {
			t.Fatalf("container fs mountpoint %q, want %s", c.FsId.GetMountpoint(), filepath.Join(a.root, "containers"))
		}
		grown := c.UsedBytes.GetValue() - before.ContainerFilesystems[0].UsedBytes.GetValue()
		if grown >= written && c.InodesUsed.GetValue() > before.ContainerFilesystems[0].InodesUsed.GetValue() {
			if img := after.ImageFilesystems[0].UsedBytes.GetValue() - before.ImageFilesystems[0].UsedBytes.GetValue(); img >= written {
				t.Errorf("the image filesystem grew by %d bytes with a container's writes", img)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("container fs grew by %d bytes after an 8 MiB write, want at least %d: %v", grown, written, c)
		}
		time.Sleep(time.Second)
	}
}

func imageFsInfo(t *testing.T, a *agent) *runtimeapi.ImageFsInfoResponse {
	t.Helper()
	r, err := a.img.ImageFsInfo(ctxT(t), &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
