package e2e

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The image's VOLUME /data gets an anonymous volume: the container sees the image's file
// there, its writes land in the volume's directory and not in its writable layer, and the
// directory goes with the container.
func TestAnonymousVolume(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "anonvol"))
	c := ctrConfig("writer", env.images.volume, withShell(
		"cat /data/seed; stat -c 'owner %u:%g mode %a' /data; echo written > /data/new; grep ' /data ' /proc/mounts; echo done; sleep 3600"))
	id := runContainer(t, a, p, c)
	out := waitLog(t, logPath(p, c), "done", 30*time.Second)
	for _, want := range []string{"from image", "owner 1000:1000 mode 750", " /data "} {
		if !strings.Contains(out, want) {
			t.Errorf("container output lacks %q:\n%s", want, out)
		}
	}
	layer := filepath.Join(a.root, "containers", id)
	vol := filepath.Join(layer, "volumes", "0")
	if b, err := os.ReadFile(filepath.Join(vol, "new")); err != nil || string(b) != "written\n" {
		t.Errorf("volume dir has new = %q, %v; want the container's write", b, err)
	}
	if _, err := os.Lstat(filepath.Join(layer, "upper", "data", "new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the write reached the writable layer: %v", err)
	}

	_, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
	must(t, err, "stop")
	_, err = a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	must(t, err, "remove")
	if _, err := os.Stat(vol); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("volume dir after removal: %v", err)
	}
}

// A CRI mount at the image's volume path wins: no anonymous volume is made.
func TestAnonymousVolumeCRIMountWins(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "anonvolcri"))
	host := t.TempDir()
	must(t, os.WriteFile(filepath.Join(host, "mine"), []byte("kubelet\n"), 0o644), "write host file")
	c := ctrConfig("reader", env.images.volume, withMount(host, "/data", false), withShell("ls /data; echo done"))
	id := runContainer(t, a, p, c)
	if ex := waitExited(t, a, id, 30*time.Second); ex.ExitCode != 0 {
		t.Fatalf("reader exited %d: %s", ex.ExitCode, ex.Message)
	}
	out := logText(readLog(t, logPath(p, c)), "stdout")
	if !strings.Contains(out, "mine") || strings.Contains(out, "seed") {
		t.Errorf("/data shows %q, want the CRI mount's content only", out)
	}
	if _, err := os.Stat(filepath.Join(a.root, "containers", id, "volumes")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an anonymous volume was made under a CRI mount: %v", err)
	}
}

// In a pod with a user namespace the anonymous volume shows the image's owners, and the
// container's root can write into it.
func TestAnonymousVolumeUserNS(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "anonvoluserns", withUserNS(kubeletUserNS())))
	c := ctrConfig("writer", env.images.volume, withShell(
		"stat -c 'owner %u:%g' /data /data/seed; echo written > /data/new && echo wrote; id -u"))
	id := runContainer(t, a, p, c)
	if ex := waitExited(t, a, id, 30*time.Second); ex.ExitCode != 0 {
		t.Fatalf("writer exited %d: %s", ex.ExitCode, ex.Message)
	}
	out := logText(readLog(t, logPath(p, c)), "stdout")
	if strings.Count(out, "owner 1000:1000") != 2 || !strings.Contains(out, "wrote") {
		t.Errorf("output %q, want /data and /data/seed owned by 1000:1000 and a write", out)
	}
}
