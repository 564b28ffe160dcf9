package kubelet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestCrashLoopBackOff: a container that keeps failing under restartPolicy
// Always is restarted with a growing back-off (10s, 20s, ...), and crictl can
// read the log of the attempt before the current one.
func TestCrashLoopBackOff(t *testing.T) {
	t.Parallel()
	const name = "crashloop"
	// The run counter lives in the emptyDir, which survives container restarts,
	// so each attempt's log names its attempt. Each attempt runs 8s: --previous is read while
	// an attempt after the first runs, and one poll below (crictl) takes seconds in the VM.
	script := `n=$(cat /state/n 2>/dev/null || echo 0); echo $((n+1)) > /state/n; echo "run $n started"; sleep 8; echo "run $n crashing" >&2; exit 3`
	runPod(t, newPod(name, withEmptyDir("state"), withContainer(withMount(shell("crash", script), "state", "/state"))))

	created := map[int]time.Time{} // attempt -> creation, as crictl shows it
	sawBackOff := false
	previousChecked := false
	var p pod
	var seen []string // distinct container states the kubelet reported, in order
	sandboxID := ""   // the pod's one sandbox, looked up once: each crictl call costs seconds in the VM
	waitFor(t, 3*time.Minute, "four attempts of the crashing container", func() (bool, string) {
		var found bool
		var err error
		p, found, err = env.kubelet.pod(name)
		if err != nil || !found {
			return false, fmt.Sprintf("kubelet: found=%v err=%v", found, err)
		}
		c, _ := p.container("crash")
		if c.State.Waiting != nil && c.State.Waiting.Reason == "CrashLoopBackOff" {
			sawBackOff = true
		}
		if st := fmt.Sprintf("%d:%s", c.RestartCount, c.State); len(seen) == 0 || seen[len(seen)-1] != st {
			seen = append(seen, st)
		}
		if sandboxID == "" {
			sb, err := crictlReadyPod(name)
			if err != nil {
				return false, err.Error()
			}
			sandboxID = sb.ID
		}
		cs, err := crictlContainers(sandboxID, "crash")
		if err != nil {
			return false, err.Error()
		}
		for _, cc := range cs {
			if _, ok := created[cc.Metadata.Attempt]; !ok {
				created[cc.Metadata.Attempt] = cc.CreatedAt.Time()
			}
			// --previous reads attempt-1's log file, which exists while
			// the kubelet keeps that dead container (only the newest is kept).
			if !previousChecked && cc.Metadata.Attempt >= 1 && cc.State == "CONTAINER_RUNNING" {
				previousChecked = checkPreviousLog(t, sandboxID, cc)
			}
		}
		return len(created) >= 4 && c.RestartCount >= 3, p.summary()
	})
	t.Logf("kubelet reported restarts:state %v", seen)

	c, _ := p.container("crash")
	if !sawBackOff {
		t.Errorf("kubelet: never reported CrashLoopBackOff: %s", p.summary())
	}
	if c.LastState.Terminated == nil || c.LastState.Terminated.ExitCode != 3 {
		t.Errorf("kubelet: want last termination with exit code 3, got %s", c.LastState)
	}
	if !previousChecked {
		t.Error("crictl: never saw a running attempt after the first to read --previous logs of")
	}
	// The first restart is immediate; then each attempt runs 8s and the
	// back-off doubles from 10s, so the next gap is about 10s longer.
	gap1, gap2 := created[2].Sub(created[1]), created[3].Sub(created[2])
	t.Logf("attempts created %v, %v, %v apart", created[1].Sub(created[0]), gap1, gap2)
	if gap1 < 10*time.Second || gap2 < gap1+5*time.Second {
		t.Errorf("back-off does not grow: attempts 1, 2, 3 created %v then %v apart", gap1, gap2)
	}
}

// checkPreviousLog reads `crictl logs --previous` of a running attempt: attempt-1's lines.
// It reports whether the check counted: when the read fails and cur is no longer running, cur
// crashed in between and the kubelet may have removed the previous attempt's log with its
// container (it keeps only the newest dead one), which is no fault of the runtime's. The caller
// then checks a later attempt. A failure while cur still runs is an error.
func checkPreviousLog(t *testing.T, sandboxID string, cur criContainer) bool {
	t.Helper()
	out, err := crictlLogs(cur.ID, true)
	want := []string{fmt.Sprintf("run %d started", cur.Metadata.Attempt-1), fmt.Sprintf("run %d crashing", cur.Metadata.Attempt-1)}
	ok := err == nil
	for _, w := range want {
		ok = ok && strings.Contains(out, w)
	}
	if ok {
		return true
	}
	if !stillRunning(sandboxID, cur) {
		t.Logf("crictl logs --previous %s (attempt %d) raced its crash (%q%s): checking a later attempt", cur.ID, cur.Metadata.Attempt, out, errString(err))
		return false
	}
	t.Errorf("crictl logs --previous %s (attempt %d) while it runs: want %q, got %q%s", cur.ID, cur.Metadata.Attempt, want, out, errString(err))
	return true
}

// stillRunning reports whether crictl lists cur as running.
func stillRunning(sandboxID string, cur criContainer) bool {
	cs, err := crictlContainers(sandboxID, cur.Metadata.Name)
	if err != nil {
		return false
	}
	for _, c := range cs {
		if c.ID == cur.ID {
			return c.State == "CONTAINER_RUNNING"
		}
	}
	return false
}
