package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

var volumePod = `apiVersion: v1
kind: ConfigMap
metadata: {name: cm}
data: {greeting: hello-from-configmap}
---
apiVersion: v1
kind: Secret
metadata: {name: sec}
stringData: {password: s3cret}
---
apiVersion: v1
kind: Pod
metadata: {name: vol}
spec:
  nodeSelector: {kubernetes.io/hostname: ` + nodeName + `}
  restartPolicy: Never
  containers:
  - name: c
    image: ` + busybox + `
    command: ["sh", "-c", '` + stopOnTerm + `']
    volumeMounts:
    - {name: cm, mountPath: /etc/cm}
    - {name: sec, mountPath: /etc/sec}
  volumes:
  - {name: cm, configMap: {name: cm}}
  - {name: sec, secret: {secretName: sec}}
`

// TestConfigMapSecretVolumes: a pod sees its ConfigMap and Secret as files, the Secret on
// tmpfs, and an updated ConfigMap reaches the running pod.
func TestConfigMapSecretVolumes(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	mustKubectlIn(t, volumePod, "-n", ns, "apply", "-f", "-")
	if _, err := kubectl(t, "-n", ns, "wait", "--for=condition=Ready", "pod/vol", "--timeout=120s"); err != nil {
		desc, _ := kubectl(t, "-n", ns, "describe", "pod", "vol")
		t.Fatalf("%v\n%s", err, desc)
	}
	if got := mustKubectl(t, "-n", ns, "exec", "vol", "--", "cat", "/etc/cm/greeting"); got != "hello-from-configmap" {
		t.Errorf("configmap file: %q", got)
	}
	if got := mustKubectl(t, "-n", ns, "exec", "vol", "--", "cat", "/etc/sec/password"); got != "s3cret" {
		t.Errorf("secret file: %q", got)
	}
	mounts := mustKubectl(t, "-n", ns, "exec", "vol", "--", "cat", "/proc/mounts")
	if !hasMount(mounts, "/etc/sec", "tmpfs") {
		t.Errorf("/etc/sec is not a tmpfs mount in the container:\n%s", mounts)
	}
	mustKubectl(t, "-n", ns, "patch", "configmap", "cm", "-p", `{"data":{"greeting":"updated"}}`)
	// The kubelet refreshes projected files on its sync period (a minute by default).
	waitFor(t, 3*time.Minute, "the updated ConfigMap in the pod", func() error {
		got, err := kubectl(t, "-n", ns, "exec", "vol", "--", "cat", "/etc/cm/greeting")
		if err != nil {
			return err
		}
		if got != "updated" {
			return fmt.Errorf("still %q", got)
		}
		return nil
	})
}

func hasMount(mounts, target, fstype string) bool {
	for line := range strings.SplitSeq(mounts, "\n") {
		f := strings.Fields(line)
		if len(f) > 2 && f[1] == target && f[2] == fstype {
			return true
		}
	}
	return false
}
