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

// criuRefusal is the part of berth's Unimplemented refusal that says why CRIU is unusable on
// this node: missing altogether (the test VM has no criu), or present but failing its check
// (the build hosts' kernels).
func criuRefusal() string {
	if _, err := exec.LookPath("criu"); err != nil {
		return "criu is not installed"
	}
	return "criu check"
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
		if !strings.Contains(err.Error(), criuRefusal()) {
			t.Errorf("the refusal does not say why: %v", err)
		}
	}
}

// Pod checkpoints: bad requests get a clear error and leave the output directory empty; where
// CRIU cannot run, CheckpointPod and RestorePod are Unimplemented with the reason.
func TestCheckpointPodBadInputs(t *testing.T) {
	a := env.shared
	ok, _ := criuWorks()
	p := runPod(t, a, podConfig(t, "podckpt-bad"))
	running := runContainer(t, a, p, ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "1000")))
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "mine"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		req  *runtimeapi.CheckpointPodRequest
		want codes.Code
	}{
		{"unknown pod", &runtimeapi.CheckpointPodRequest{PodSandboxId: "0123456789abcdef", OutputPath: t.TempDir(), ContainerIds: []string{running}}, codes.NotFound},
		{"no containers", &runtimeapi.CheckpointPodRequest{PodSandboxId: p.id, OutputPath: t.TempDir()}, codes.InvalidArgument},
		{"output not empty", &runtimeapi.CheckpointPodRequest{PodSandboxId: p.id, OutputPath: full, ContainerIds: []string{running}}, codes.InvalidArgument},
		{"unknown option", &runtimeapi.CheckpointPodRequest{PodSandboxId: p.id, OutputPath: t.TempDir(), ContainerIds: []string{running}, Options: map[string]string{"x": "y"}}, codes.InvalidArgument},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := a.rt.CheckpointPod(ctxT(t), tt.req)
			want := tt.want
			if !ok {
				want = codes.Unimplemented
			}
			if status.Code(err) != want {
				t.Fatalf("err = %v; want %s", err, want)
			}
			if !ok && !strings.Contains(err.Error(), criuRefusal()) {
				t.Errorf("the refusal does not say why: %v", err)
			}
			if ents, _ := os.ReadDir(tt.req.OutputPath); tt.req.OutputPath != full && len(ents) != 0 {
				t.Errorf("output directory not empty: %v", ents)
			}
		})
	}
	t.Run("restore from a directory that is no checkpoint", func(t *testing.T) {
		_, err := a.rt.RestorePod(ctxT(t), &runtimeapi.RestorePodRequest{
			CheckpointPath: t.TempDir(), Config: podConfig(t, "podckpt-none"),
			ContainerConfigs: []*runtimeapi.ContainerConfig{ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "1000"))},
		})
		want := codes.InvalidArgument
		if !ok {
			want = codes.Unimplemented
		}
		if status.Code(err) != want {
			t.Fatalf("err = %v; want %s", err, want)
		}
	})
}

// Two counters checkpointed together by CheckpointPod, their pod removed and the agent
// restarted, restored by RestorePod + StartContainer: both go on from where they were.
func TestCheckpointPodRestoreCounters(t *testing.T) {
	if ok, why := criuWorks(); !ok {
		t.Skipf("criu cannot run on this kernel: %s", why)
	}
	a := newAgent(t, agentOptions{})
	p := runPod(t, a, podConfig(t, "podckpt-src"))
	var ids []string
	var cfgs []*runtimeapi.ContainerConfig
	for _, name := range []string{"one", "two"} {
		cfg := ctrConfig(name, env.images.busybox, withShell(counterScript))
		ids = append(ids, runContainer(t, a, p, cfg))
		cfgs = append(cfgs, cfg)
	}
	for _, id := range ids {
		waitCount(t, a, id, 10)
	}
	dir := t.TempDir()
	if _, err := a.rt.CheckpointPod(ctxT(t), &runtimeapi.CheckpointPodRequest{PodSandboxId: p.id, OutputPath: dir, ContainerIds: ids}); err != nil {
		t.Fatalf("CheckpointPod: %v", err)
	}
	for _, id := range ids {
		// Thawed: the source counts on.
		waitCount(t, a, id, readCount(t, a, id)+2)
	}
	stopPod(t, a, p)
	if err := a.stop(); err != nil {
		t.Fatal(err)
	}
	if err := a.start(); err != nil {
		t.Fatal(err)
	}
	resp, err := a.rt.RestorePod(ctxT(t), &runtimeapi.RestorePodRequest{CheckpointPath: dir, Config: podConfig(t, "podckpt-dst"), ContainerConfigs: cfgs})
	if err != nil {
		t.Fatalf("RestorePod: %v", err)
	}
	t.Cleanup(func() { stopPod(t, a, pod{id: resp.PodSandboxId}) })
	for _, rc := range resp.RestoredContainers {
		startContainer(t, a, rc.ContainerId)
		if first := readCount(t, a, rc.ContainerId); first < 10 {
			t.Errorf("restored %s reads %d: it started over", rc.Name, first)
		}
	}
}
