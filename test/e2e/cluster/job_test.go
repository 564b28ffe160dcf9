package cluster_test

import (
	"strings"
	"testing"
)

// TestJob: a Job's pod runs to completion and the Job reports Complete.
func TestJob(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	mustKubectl(t, "-n", ns, "create", "job", "j", "--image="+busybox, "--", "sh", "-c", "echo job ran; exit 0")
	if _, err := kubectl(t, "-n", ns, "wait", "--for=condition=Complete", "job/j", "--timeout=180s"); err != nil {
		desc, _ := kubectl(t, "-n", ns, "describe", "job", "j")
		t.Fatalf("%v\n%s", err, desc)
	}
	if logs := mustKubectl(t, "-n", ns, "logs", "job/j"); !strings.Contains(logs, "job ran") {
		t.Fatalf("job logs %q", logs)
	}
	if s := mustKubectl(t, "-n", ns, "get", "job", "j", "-o", "jsonpath={.status.succeeded}"); s != "1" {
		t.Fatalf("job succeeded=%q, want 1", s)
	}
}
