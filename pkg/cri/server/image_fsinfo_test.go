package server

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/images"
)

// usageStore reports a fixed image store usage.
type usageStore struct{ ImageStore }

func (usageStore) FsUsage(context.Context) (images.FsUsage, error) {
	return images.FsUsage{Mountpoint: "/var/lib/berth/images", UsedBytes: 1 << 20, InodesUsed: 10}, nil
}

// TestImageFsInfoContainerFilesystems: the writable layers of every container, running or
// not, add up in container_filesystems, on the filesystem of <root>/containers.
func TestImageFsInfoContainerFilesystems(t *testing.T) {
	e := newTestEnv(t)
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, containerConfig("a"))
	if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	e.createContainer(t, podID, pod, containerConfig("b")) // created only: its layer counts too
	f := &fakeStatsSources{cpu: map[string]uint64{}, now: time.Now(), reads: map[string]int{}, layer: layerUsage{Bytes: 4096, Inodes: 3}}
	e.svc.stats = newStatsCollector(e.svc.store, f.sources(), time.Second)
	e.svc.images = usageStore{}

	resp, err := e.svc.ImageFsInfo(context.Background(), &runtimeapi.ImageFsInfoRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.ImageFilesystems) != 1 || resp.ImageFilesystems[0].UsedBytes.GetValue() != 1<<20 {
		t.Errorf("image filesystems = %v", resp.ImageFilesystems)
	}
	if len(resp.ContainerFilesystems) != 1 {
		t.Fatalf("container filesystems = %v, want one", resp.ContainerFilesystems)
	}
	c := resp.ContainerFilesystems[0]
	if got, want := c.FsId.GetMountpoint(), filepath.Join(e.cfg.Root, "containers"); got != want {
		t.Errorf("container fs mountpoint %q, want %q", got, want)
	}
	if c.UsedBytes.GetValue() != 2*4096 || c.InodesUsed.GetValue() != 2*3 || c.Timestamp == 0 {
		t.Errorf("container fs usage = %v, want 8192 bytes and 6 inodes of two layers", c)
	}
}
