package e2e

import (
	"strconv"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet gives Guaranteed pods oom_score_adj -997. A node whose agent holds
// CAP_SYS_RESOURCE (the VM) applies it; one that does not (this host's root) raises it to the
// agent's own, says so in Status (condition SysResource false) and on the container (the
// io.berth.not-honoured annotation). Either way the container starts.
func TestOOMScoreAdjApplied(t *testing.T) {
	a := env.shared
	st, err := a.rt.Status(ctxT(t), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var cond *runtimeapi.RuntimeCondition
	for _, c := range st.GetStatus().GetConditions() {
		if c.Type == "SysResource" {
			cond = c
		}
	}
	if cond == nil {
		t.Fatalf("no SysResource condition in Status: %v", st.GetStatus().GetConditions())
	}

	p := runPod(t, a, podConfig(t, "oomscore"))
	cfg := ctrConfig("guaranteed", env.images.busybox, withShell("cat /proc/self/oom_score_adj"))
	cfg.Linux.Resources.OomScoreAdj = -997
	id := runContainer(t, a, p, cfg)
	st2 := waitExited(t, a, id, time.Minute)
	got, err := strconv.Atoi(strings.TrimSpace(logText(readLog(t, logPath(p, cfg)), "stdout")))
	if err != nil || st2.ExitCode != 0 {
		t.Fatalf("container printed no oom_score_adj (exit %d): %v", st2.ExitCode, err)
	}
	note, noted := containerStatus(t, a, id).GetAnnotations()["io.berth.not-honoured"]
	if cond.Status {
		if got != -997 || noted {
			t.Errorf("with CAP_SYS_RESOURCE: oom_score_adj %d (want -997), not-honoured annotation %q", got, note)
		}
		return
	}
	t.Logf("node lacks CAP_SYS_RESOURCE (%s): oom_score_adj %d", cond.Message, got)
	if got < -997 || !noted || !strings.Contains(note, "oom_score_adj -997 raised to "+strconv.Itoa(got)) {
		t.Errorf("without CAP_SYS_RESOURCE: oom_score_adj %d, annotation %q; want the floor and a note naming it", got, note)
	}
}
