package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cgroupProcs returns the pids in the container's cgroup, in any hierarchy, as libcontainer
// recorded its paths (<state>/runc/<id>/state.json).
func cgroupProcs(t *testing.T, a *agent, id string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.state, "runc", id, "state.json"))
	if err != nil {
		t.Fatalf("libcontainer state of %s: %v", id, err)
	}
	var st struct {
		CgroupPaths map[string]string `json:"cgroup_paths"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatalf("decode libcontainer state of %s: %v", id, err)
	}
	if len(st.CgroupPaths) == 0 {
		t.Fatalf("libcontainer state of %s names no cgroup", id)
	}
	var out []string
	for ctrl, dir := range st.CgroupPaths {
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if err != nil {
			t.Fatalf("cgroup.procs of %s (%q): %v", id, ctrl, err)
		}
		out = append(out, strings.Fields(string(procs))...)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// podProcs lists the host's processes in the pod's cgroups that run cmdline.
func podProcs(t *testing.T, podID, cmdline string) []hostProc {
	t.Helper()
	var out []hostProc
	for _, p := range procsOf(t, podID) {
		if p.cmdline == cmdline && p.state != "Z" {
			out = append(out, p)
		}
	}
	return out
}

// assertNothingLeft checks that a container reported exited has no process left: neither
// in its cgroup nor, running the leftover's command, anywhere in its pod.
func assertNothingLeft(t *testing.T, a *agent, p pod, id, leftover string) {
	t.Helper()
	if procs := cgroupProcs(t, a, id); len(procs) > 0 {
		t.Errorf("container %s reported exited, its cgroup still holds %v", id, procs)
	}
	if left := podProcs(t, p.id, leftover); len(left) > 0 {
		t.Errorf("container %s reported exited, %q still runs on the host: %+v", id, leftover, left)
	}
}

// When a container's init exits, what it left behind goes with it, as when its PID
// namespace's init dies. In a shared (pod) PID namespace the kernel kills nothing: the
// runtime must, before it reports the exit.
func TestExitKillsLeftovers(t *testing.T) {
	a := env.shared
	for _, tt := range []struct {
		name string
		pid  runtimeapi.NamespaceMode
	}{
		{name: "pod pid namespace", pid: runtimeapi.NamespaceMode_POD},
		{name: "own pid namespace", pid: runtimeapi.NamespaceMode_CONTAINER},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := runPod(t, a, podConfig(t, "leftovers", withPodPID(tt.pid)))
			c := ctrConfig("leaver", env.images.busybox, withShell("sleep 999 & echo forked; exit 0"))
			id := runContainer(t, a, p, c)
			st := waitExited(t, a, id, 30*time.Second)
			assertNothingLeft(t, a, p, id, "sleep 999")
			if st.ExitCode != 0 || st.Reason != "Completed" {
				t.Errorf("exit %d reason %q, want 0 Completed", st.ExitCode, st.Reason)
			}
			if out := logText(readLog(t, logPath(p, c)), "stdout"); out != "forked\n" {
				t.Errorf("log %q, want the line written before the exit", out)
			}
		})
	}
}

// A container whose init exits on SIGTERM while a child it forked still holds its stdout:
// the stop must neither wait for that child nor lose a line of the log. Each stop's
// latency is logged (median and p90 of 20 with -v); the test asserts behaviour only.
func TestStopContainerOrphanHoldsStdout(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "orphanout", withPodPID(runtimeapi.NamespaceMode_POD)))
	const lines = 50
	script := fmt.Sprintf(`trap "exit 0" TERM; i=1; while [ $i -le %d ]; do echo line-$i; i=$((i+1)); done; `+
		`sleep 999 & echo ready; wait`, lines)
	var took []time.Duration
	for round := range 20 {
		c := ctrConfig(fmt.Sprintf("orphan-%d", round), env.images.busybox, withShell(script))
		id := runContainer(t, a, p, c)
		waitLog(t, logPath(p, c), "ready", 30*time.Second)
		start := time.Now()
		_, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 10})
		took = append(took, time.Since(start))
		must(t, err, "stop %s", id)
		st := containerStatus(t, a, id)
		if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 0 {
			t.Fatalf("after stop: %s exit %d, want EXITED 0 (the TERM trap's exit)", st.State, st.ExitCode)
		}
		assertNothingLeft(t, a, p, id, "sleep 999")
		var want strings.Builder
		for i := 1; i <= lines; i++ {
			fmt.Fprintf(&want, "line-%d\n", i)
		}
		want.WriteString("ready\n")
		if got := logText(readLog(t, logPath(p, c)), "stdout"); got != want.String() {
			t.Fatalf("log after stop:\n%s\nwant every line written before it:\n%s", got, want.String())
		}
		_, err = a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
		must(t, err, "remove %s", id)
	}
	slices.Sort(took)
	t.Logf("StopContainer with an orphan on stdout, %d stops: median %s, p90 %s, max %s",
		len(took), took[len(took)/2], took[len(took)*9/10-1], took[len(took)-1])
}
