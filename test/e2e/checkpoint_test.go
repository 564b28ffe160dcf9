package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// criuWorks reports whether CRIU can run on this kernel, as the agent decides at startup.
func criuWorks() (bool, string) {
	out, err := exec.Command("criu", "check").CombinedOutput()
	if err != nil {
		return false, strings.TrimSpace(string(out)) + ": " + err.Error()
	}
	return true, ""
}

// counterScript counts in memory and writes each value to /count: after a restore the
// count goes on from the checkpointed memory, while a fresh start would begin at 1.
const counterScript = `i=0; while true; do i=$((i+1)); echo $i > /count; sleep 0.1; done`

func readCount(t *testing.T, a *agent, id string) int {
	t.Helper()
	out, code := execIn(t, a, id, "cat", "/count")
	n, err := strconv.Atoi(strings.TrimSpace(out))
	if code != 0 || err != nil {
		t.Fatalf("read /count of %s: %q (exit %d)", id, out, code)
	}
	return n
}

func waitCount(t *testing.T, a *agent, id string, min int) int {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n := readCount(t, a, id); n >= min {
			return n
		}
		if time.Now().After(deadline) {
			t.Fatalf("counter %s did not reach %d", id, min)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// A counter keeps counting across checkpoint, removal of its pod, an agent restart and a
// restore into a new pod (new network namespace): it continues from where it was.
func TestCheckpointRestoreCounter(t *testing.T) {
	if ok, why := criuWorks(); !ok {
		t.Skipf("criu cannot run on this kernel: %s", why)
	}
	a := newAgent(t, agentOptions{})
	p := runPod(t, a, podConfig(t, "ckpt-src"))
	id := runContainer(t, a, p, ctrConfig("counter", env.images.busybox, withShell(counterScript)))
	waitCount(t, a, id, 10)

	loc := filepath.Join(t.TempDir(), "counter.tar")
	if _, err := a.rt.CheckpointContainer(ctxT(t), &runtimeapi.CheckpointContainerRequest{ContainerId: id, Location: loc, Timeout: 60}); err != nil {
		t.Fatalf("checkpoint: %v", err)
	}
	atDump := readCount(t, a, id) // the source kept running: at least the dumped value
	if st := containerStatus(t, a, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("source container is %s after the checkpoint; want running", st.State)
	}
	stopPod(t, a, p)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}

	q := runPod(t, a, podConfig(t, "ckpt-dst"))
	cfg := ctrConfig("counter", env.images.busybox, withShell(counterScript))
	cfg.Image.Image = loc
	resp, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: q.id, Config: cfg, SandboxConfig: q.cfg})
	if err != nil {
		t.Fatalf("create from checkpoint: %v", err)
	}
	startContainer(t, a, resp.ContainerId)
	first := readCount(t, a, resp.ContainerId)
	if first < 10 {
		t.Fatalf("restored counter reads %d: it started over (checkpointed at >= 10, source read %d after)", first, atDump)
	}
	if later := waitCount(t, a, resp.ContainerId, first+3); later <= first {
		t.Fatalf("restored counter does not count: %d then %d", first, later)
	}
}

func stopPod(t *testing.T, a *agent, p pod) {
	t.Helper()
	if _, err := a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("stop pod %s: %v", p.id, err)
	}
	if _, err := a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
		t.Fatalf("remove pod %s: %v", p.id, err)
	}
}

// Bad requests get a clear error and leave no archive. Where CRIU cannot run, every
// checkpoint and restore is Unimplemented with the reason.
func TestCheckpointBadInputs(t *testing.T) {
	a := env.shared
	ok, _ := criuWorks()
	p := runPod(t, a, podConfig(t, "ckpt-bad"))
	running := runContainer(t, a, p, ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "1000")))
	stopped := runContainer(t, a, p, ctrConfig("done", env.images.busybox, withCommand("true")))
	waitExited(t, a, stopped, 30*time.Second)
	dir := t.TempDir()
	notCkpt := filepath.Join(dir, "plain.tar")
	if err := os.WriteFile(notCkpt, []byte("not a checkpoint"), 0o644); err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name, id, loc string
		want          codes.Code
	}{
		{"unknown container", "0123456789abcdef", filepath.Join(dir, "a.tar"), codes.NotFound},
		{"stopped container", stopped, filepath.Join(dir, "b.tar"), codes.FailedPrecondition},
		{"unwritable location", running, filepath.Join(dir, "missing", "c.tar"), codes.InvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.rt.CheckpointContainer(ctxT(t), &runtimeapi.CheckpointContainerRequest{ContainerId: tt.id, Location: tt.loc})
			want := tt.want
			if !ok {
				want = codes.Unimplemented
			}
			if status.Code(err) != want {
				t.Fatalf("err = %v; want %s", err, want)
			}
			if _, err := os.Stat(tt.loc); err == nil {
				t.Error("an archive was written")
			}
		})
	}
	t.Run("archive that is not a checkpoint", func(t *testing.T) {
		cfg := ctrConfig("restored", env.images.busybox, withCommand("sleep", "1000"))
		cfg.Image.Image = notCkpt
		_, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "not a checkpoint archive") {
			t.Fatalf("err = %v; want InvalidArgument naming the archive", err)
		}
	})
	if !ok {
		_, err := a.rt.CheckpointContainer(ctxT(t), &runtimeapi.CheckpointContainerRequest{ContainerId: running, Location: filepath.Join(dir, "d.tar")})
		if !strings.Contains(err.Error(), "criu check") {
			t.Errorf("the refusal does not say why: %v", err)
		}
	}
}
