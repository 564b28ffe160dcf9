package kubelet_test

import (
	"fmt"
	"testing"
	"time"
)

func execProbe(period, failures int, cmd ...string) *probe {
	return &probe{Exec: &execAction{Command: cmd}, PeriodSeconds: period, FailureThreshold: failures, TimeoutSeconds: 2}
}

// TestExecProbes: exec probes run through berth's ExecSync. A liveness probe
// that starts failing makes the kubelet restart the container; a readiness
// probe gates readiness without restarting anything.
func TestExecProbes(t *testing.T) {
	t.Parallel()
	const name = "probes"
	live := shell("live", "touch /tmp/healthy; sleep 8; rm /tmp/healthy; sleep 3600")
	live.LivenessProbe = execProbe(1, 2, "test", "-f", "/tmp/healthy")
	ready := shell("ready", "sleep 5; touch /tmp/ready; sleep 3600")
	ready.ReadinessProbe = execProbe(1, 1, "test", "-f", "/tmp/ready")
	runPod(t, newPod(name, withContainer(live), withContainer(ready)))

	// Readiness: running but not ready first, then ready once the file exists.
	sawUnready := false
	waitPod(t, name, 2*time.Minute, "container ready to become ready", func(p pod) bool {
		c, ok := p.container("ready")
		if ok && c.State.Running != nil && !c.Ready {
			sawUnready = true
		}
		return ok && c.Ready
	})
	if !sawUnready {
		t.Error("kubelet: never saw container ready running but unready before its probe passed")
	}

	// Liveness: the file goes after 8s; two failed probes later the kubelet restarts it.
	p := waitPod(t, name, 90*time.Second, "container live to be restarted by its liveness probe", func(p pod) bool {
		c, _ := p.container("live")
		return c.RestartCount >= 1
	})
	liveSt, _ := p.container("live")
	if liveSt.LastState.Terminated == nil {
		t.Errorf("kubelet: live restarted but has no last termination state: %s", p.summary())
	}
	if r, _ := p.container("ready"); r.RestartCount != 0 {
		t.Errorf("kubelet: a readiness probe restarted container ready %d times", r.RestartCount)
	}
	if lines := env.kubelet.logLines(`"Probe failed"`, `probeType="Liveness"`, staticName(name)); len(lines) == 0 {
		t.Error("kubelet log: no failed liveness probe for the pod")
	}
	if lines := env.kubelet.logLines(`"Probe errored"`, staticName(name)); len(lines) > 0 {
		t.Errorf("kubelet log: exec probes errored (berth's ExecSync failed), e.g.:\n%s", lines[0])
	}

	sb, err := crictlReadyPod(name)
	if err != nil {
		t.Fatal(err)
	}
	// The kubelet keeps one dead attempt per container (its GC removes older ones), and on a
	// slow node (the VM) live may have restarted more than once by now: the oldest attempt
	// listed is exited, and a later one follows it. Between an attempt's kill and the next
	// one's creation only the dead one is listed (seconds in the VM), so crictl is polled.
	waitFor(t, 2*time.Minute, "crictl: an exited attempt of live and a later attempt", func() (bool, string) {
		cs, err := crictlContainers(sb.ID, "live")
		if err != nil {
			return false, err.Error()
		}
		return len(cs) >= 2 && cs[0].State == "CONTAINER_EXITED" && cs[len(cs)-1].Metadata.Attempt > cs[0].Metadata.Attempt,
			fmt.Sprintf("live's attempts: %+v", cs)
	})
	rs, err := crictlContainers(sb.ID, "ready")
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 1 || rs[0].State != "CONTAINER_RUNNING" {
		t.Errorf("crictl: want one running attempt of ready, got %+v", rs)
	}
}
