package kubelet_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// withMount mounts the pod volume vol at path in c.
func withMount(c container, vol, path string) container {
	c.VolumeMounts = append(c.VolumeMounts, volumeMount{Name: vol, MountPath: path})
	return c
}

// TestEmptyDirSharedByTwoContainers: one container writes into an emptyDir,
// the other reads what it wrote; the kubelet owns the volume, berth mounts it.
func TestEmptyDirSharedByTwoContainers(t *testing.T) {
	t.Parallel()
	const name = "shared-volume"
	runPod(t, newPod(name, withEmptyDir("data"),
		withContainer(withMount(shell("writer", "echo hello-from-writer > /data/msg; sleep 3600"), "data", "/data")),
		withContainer(withMount(shell("reader", "until [ -f /data/msg ]; do sleep 0.2; done; echo read: $(cat /data/msg); sleep 3600"), "data", "/data")),
	))

	p := waitPod(t, name, 2*time.Minute, "both containers running and ready", func(p pod) bool {
		w, _ := p.container("writer")
		r, _ := p.container("reader")
		return running("writer")(p) && running("reader")(p) && w.Ready && r.Ready && p.condition("Ready")
	})
	for _, c := range p.Status.ContainerStatuses {
		if c.RestartCount != 0 {
			t.Errorf("kubelet: container %s restarted %d times", c.Name, c.RestartCount)
		}
	}

	sb, err := crictlReadyPod(name)
	if err != nil {
		t.Fatal(err)
	}
	if sb.Metadata.UID != p.Metadata.UID {
		t.Errorf("crictl: sandbox uid %q, kubelet pod uid %q", sb.Metadata.UID, p.Metadata.UID)
	}
	cs, err := crictlContainers(sb.ID, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 2 {
		t.Fatalf("crictl: want 2 containers in sandbox, got %+v", cs)
	}
	for _, c := range cs {
		if c.State != "CONTAINER_RUNNING" {
			t.Errorf("crictl: container %s is %s", c.Metadata.Name, c.State)
		}
	}

	reader, _ := p.container("reader")
	waitFor(t, 30*time.Second, "the reader to log what the writer wrote", func() (bool, string) {
		out, err := crictlLogs(runtimeID(reader.ContainerID), false)
		return err == nil && strings.Contains(out, "read: hello-from-writer"), out + errString(err)
	})

	// The volume is the kubelet's directory, seen by both containers.
	hostFile := filepath.Join(env.kubelet.rootDir, "pods", p.Metadata.UID, "volumes", "kubernetes.io~empty-dir", "data", "msg")
	if b, err := os.ReadFile(hostFile); err != nil || strings.TrimSpace(string(b)) != "hello-from-writer" {
		t.Errorf("host: %s = %q, %v; want hello-from-writer", hostFile, b, err)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return " (" + err.Error() + ")"
}
