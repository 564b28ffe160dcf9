package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// doctorFinding mirrors server.Finding as `berth doctor --json` prints it.
type doctorFinding struct {
	Problem, Kind, Path, Owner, Detail string
	Fixed                              bool
}

// doctor runs `berth doctor` on the agent's directories (it must be stopped) and returns
// its findings and whether it exited zero.
func doctor(t *testing.T, a *agent, extra ...string) ([]doctorFinding, bool) {
	t.Helper()
	args := append(append([]string{}, a.extraArgs...), append([]string{"doctor", "--shared-node", "--json"}, extra...)...)
	cmd := exec.Command(env.berthBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run doctor: %v", err)
	}
	var rep struct{ Findings []doctorFinding }
	if jerr := json.Unmarshal(out, &rep); jerr != nil {
		t.Fatalf("doctor output %q (stderr %q): %v", out, stderr.String(), jerr)
	}
	return rep.Findings, err == nil
}

// TestDoctorAfterKill kills the agent in the middle of RunPodSandbox: the doctor run on the
// dead agent's directories reports only what startup reconcile releases, and after one
// restart it finds the ledger and the node in agreement. A shim killed while the agent is
// down is reported missing; a mount nothing owns is reported, and --fix releases it.
func TestDoctorAfterKill(t *testing.T) {
	a := newAgent(t, agentOptions{})
	_, err := a.img.PullImage(ctxT(t), &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: env.images.busybox}})
	must(t, err, "pull")
	p := runPod(t, a, podConfig(t, "doctor-live"))
	runContainer(t, a, p, ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "3600")))

	for i, delay := range []time.Duration{30 * time.Millisecond, 120 * time.Millisecond, 400 * time.Millisecond} {
		done := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := a.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(t, fmt.Sprintf("doctor-kill-%d", i))})
			done <- err
		}()
		time.Sleep(delay)
		must(t, a.kill9(), "kill agent")
		<-done
		findings, _ := doctor(t, a)
		for _, f := range findings {
			t.Logf("after kill at %v: %+v", delay, f)
			if f.Problem == "missing" {
				t.Errorf("after kill at %v: the ledger claims what the node lacks: %+v", delay, f)
			}
		}
		must(t, a.start(), "restart agent")
		removeUnknownPods(t, a, p.id)
		must(t, a.stop(), "stop agent")
		if findings, ok := doctor(t, a); !ok || len(findings) != 0 {
			t.Fatalf("after restart (kill at %v): doctor findings %+v, exit zero %v; want none", delay, findings, ok)
		}
		must(t, a.start(), "restart agent")
	}

	must(t, a.stop(), "stop agent")
	shimPid := readPid(t, filepath.Join(a.state, "shims", p.id, "shim.pid"))
	must(t, syscall.Kill(shimPid, syscall.SIGKILL), "kill shim")
	waitGone(t, shimPid)
	findings, ok := doctor(t, a)
	if ok || !hasFinding(findings, "missing", "shim", p.id) {
		t.Errorf("killed shim: findings %+v, exit zero %v; want the shim missing, non-zero exit", findings, ok)
	}

	orphan := filepath.Join(a.state, "sandboxes", strings.Repeat("0e", 32), "shm")
	must(t, os.MkdirAll(orphan, 0o755), "mkdir")
	must(t, syscall.Mount("shm", orphan, "tmpfs", 0, "size=64k"), "mount orphan")
	t.Cleanup(func() { _ = syscall.Unmount(orphan, syscall.MNT_DETACH) })
	if findings, ok = doctor(t, a); ok || !hasFinding(findings, "unowned", "mount", "") {
		t.Errorf("orphan mount: findings %+v, exit zero %v; want it unowned, non-zero exit", findings, ok)
	}
	findings, _ = doctor(t, a, "--fix")
	for _, f := range findings {
		if f.Problem == "unowned" && !f.Fixed {
			t.Errorf("--fix left %+v", f)
		}
	}
	if findings, _ = doctor(t, a); hasFinding(findings, "unowned", "mount", "") || hasFinding(findings, "unowned", "dir", "") {
		t.Errorf("after --fix: %+v", findings)
	}
	must(t, a.start(), "restart agent")
}

// removeUnknownPods removes every pod but keep: what a killed RunPodSandbox left.
func removeUnknownPods(t *testing.T, a *agent, keep string) {
	t.Helper()
	list, err := a.rt.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	must(t, err, "list pods")
	for _, it := range list.Items {
		if it.Id == keep {
			continue
		}
		_, err := a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: it.Id})
		must(t, err, "stop pod %s", it.Id)
		_, err = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: it.Id})
		must(t, err, "remove pod %s", it.Id)
	}
}

func hasFinding(fs []doctorFinding, problem, kind, owner string) bool {
	for _, f := range fs {
		if f.Problem == problem && f.Kind == kind && (owner == "" || f.Owner == owner) {
			return true
		}
	}
	return false
}

func readPid(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err, "read %s", path)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	must(t, err, "parse %s", path)
	return pid
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil || strings.Contains(string(b), ") Z ") {
			return
		}
	}
	t.Fatalf("pid %d still alive", pid)
}
