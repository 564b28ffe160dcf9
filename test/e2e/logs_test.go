package e2e

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet rotates logs by renaming the file and calling
// ReopenContainerLog: every line lands in one of the two files, none twice.
func TestLogRotationLosesNoLine(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "rotate"))
	c := ctrConfig("ticker", env.images.busybox, withShell("i=0; while true; do echo line $i; i=$((i+1)); sleep 0.05; done"))
	id := runContainer(t, a, p, c)
	path := logPath(p, c)
	waitLog(t, path, "line 5", 30*time.Second)

	must(t, os.Rename(path, path+".1"), "rotate")
	_, err := a.rt.ReopenContainerLog(ctxT(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: id})
	must(t, err, "reopen log")
	waitLog(t, path, "line", 10*time.Second)
	time.Sleep(500 * time.Millisecond)
	_, err = a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
	must(t, err, "stop")

	old := logText(readLog(t, path+".1"), "stdout")
	cur := logText(readLog(t, path), "stdout")
	all := old + cur
	n := strings.Count(all, "line ")
	for i := 0; i < n; i++ {
		if got := strings.Count(all, fmt.Sprintf("line %d\n", i)); got != 1 {
			t.Fatalf("line %d appears %d times across the rotation (old %d lines, new %d)", i, got,
				strings.Count(old, "\n"), strings.Count(cur, "\n"))
		}
	}
	if strings.Count(cur, "\n") == 0 {
		t.Fatal("nothing written to the reopened log")
	}
	// Reopening the log of a stopped container is refused.
	if _, err := a.rt.ReopenContainerLog(ctxT(t), &runtimeapi.ReopenContainerLogRequest{ContainerId: id}); err == nil {
		t.Error("ReopenContainerLog of a stopped container succeeded")
	}
}
