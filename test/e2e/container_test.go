package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestContainerLifecycle(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "ctr"))
	c := ctrConfig("echo", env.images.busybox, withShell("echo out; echo err >&2; echo $GREETING; pwd; id -u"),
		withEnv("GREETING", "hello"))
	id := createContainer(t, a, p, c)
	if st := containerStatus(t, a, id); st.State != runtimeapi.ContainerState_CONTAINER_CREATED || st.CreatedAt == 0 {
		t.Fatalf("after create: state %s created %d", st.State, st.CreatedAt)
	}
	startContainer(t, a, id)
	st := waitExited(t, a, id, 30*time.Second)
	if st.ExitCode != 0 || st.Reason != "Completed" {
		t.Errorf("exit %d reason %q, want 0 Completed", st.ExitCode, st.Reason)
	}
	if st.StartedAt == 0 || st.FinishedAt < st.StartedAt {
		t.Errorf("times: started %d finished %d", st.StartedAt, st.FinishedAt)
	}
	if st.ImageRef == "" || !strings.HasPrefix(st.ImageRef, "sha256:") && !strings.Contains(st.ImageRef, "@sha256:") {
		t.Errorf("image ref %q", st.ImageRef)
	}
	if st.LogPath != logPath(p, c) {
		t.Errorf("log path %q, want %q", st.LogPath, logPath(p, c))
	}
	lines := readLog(t, logPath(p, c))
	if got := logText(lines, "stdout"); got != "out\nhello\n/\n0\n" {
		t.Errorf("stdout = %q", got)
	}
	if got := logText(lines, "stderr"); got != "err\n" {
		t.Errorf("stderr = %q", got)
	}

	list, err := a.rt.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{PodSandboxId: p.id}})
	must(t, err, "list containers")
	if len(list.Containers) != 1 || list.Containers[0].Id != id {
		t.Errorf("list by pod = %v", list.Containers)
	}
	for i := 0; i < 2; i++ {
		_, err := a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
		must(t, err, "remove container (%d)", i)
	}
	if _, err := a.rt.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: id}); status.Code(err) != codes.NotFound {
		t.Errorf("status after remove: %v, want NotFound", err)
	}
}

func TestContainerExitCodeAndReason(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "exit"))
	id := runContainer(t, a, p, ctrConfig("fail", env.images.busybox, withShell("exit 3")))
	st := waitExited(t, a, id, 30*time.Second)
	if st.ExitCode != 3 || st.Reason != "Error" {
		t.Fatalf("exit %d reason %q, want 3 Error", st.ExitCode, st.Reason)
	}
}

// The image's config (entrypoint, cmd, env, working dir) applies when the
// container does not override it.
func TestContainerImageConfig(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "imgcfg"))
	c := ctrConfig("cfg", env.images.configured)
	id := runContainer(t, a, p, c)
	waitLog(t, logPath(p, c), "configured", 30*time.Second)
	_, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 2})
	must(t, err, "stop")
	// The image's stop signal is SIGUSR1, which the image's command traps and
	// answers with exit 42 (a SIGTERM or the SIGKILL after 2s would not).
	if st := containerStatus(t, a, id); st.ExitCode != 42 {
		t.Errorf("exit code %d, want 42 (SIGUSR1 from the image's StopSignal)", st.ExitCode)
	}
	out := logText(readLog(t, logPath(p, c)), "stdout")
	if !strings.Contains(out, "got usr1") {
		t.Errorf("log lacks the trap's output:\n%s", out)
	}
	// Env and working dir from the image.
	c2 := ctrConfig("cfgenv", env.images.configured, withCommand("/bin/sh", "-c", "echo $FROM_IMAGE; pwd"))
	id2 := runContainer(t, a, p, c2)
	waitExited(t, a, id2, 30*time.Second)
	if got := logText(readLog(t, logPath(p, c2)), "stdout"); got != "yes\n/tmp\n" {
		t.Errorf("env/workdir from image: %q, want \"yes\\n/tmp\\n\"", got)
	}
}

func TestContainerStop(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "stop"))
	// A process that ignores SIGTERM: Stop must SIGKILL it after the timeout.
	c := ctrConfig("stubborn", env.images.busybox, withShell("trap '' TERM; echo ready; while true; do sleep 1; done"))
	id := runContainer(t, a, p, c)
	waitLog(t, logPath(p, c), "ready", 30*time.Second)
	start := time.Now()
	_, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
	must(t, err, "stop")
	st := containerStatus(t, a, id)
	if st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode != 137 {
		t.Fatalf("after stop: state %s exit %d, want EXITED 137", st.State, st.ExitCode)
	}
	if d := time.Since(start); d < time.Second {
		t.Errorf("stop returned after %s, before the 1s grace period", d)
	}
	// Stopping again, and stopping an unknown container, succeed.
	_, err = a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
	must(t, err, "second stop")
	_, err = a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: "nope"})
	must(t, err, "stop unknown")
	_, err = a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: "nope"})
	must(t, err, "remove unknown")
}

// RemoveContainer stops a running container first.
func TestContainerRemoveRunning(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "rmrun"))
	id := runContainer(t, a, p, ctrConfig("sleeper", env.images.busybox, withCommand("sleep", "3600")))
	_, err := a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	must(t, err, "remove running container")
	list, err := a.rt.ListContainers(ctxT(t), &runtimeapi.ListContainersRequest{Filter: &runtimeapi.ContainerFilter{Id: id}})
	must(t, err, "list")
	if len(list.Containers) != 0 {
		t.Fatalf("removed container still listed: %v", list.Containers)
	}
}

func TestContainerBadInput(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "badctr"))
	ctx := ctxT(t)
	_, err := a.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: ctrConfig("x", env.registry.Ref("berth/absent:1")), SandboxConfig: p.cfg})
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), "berth/absent:1") {
		t.Errorf("create with a missing image: %v, want NotFound naming it", err)
	}
	_, err = a.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: &runtimeapi.ContainerConfig{}, SandboxConfig: p.cfg})
	if status.Code(err) != codes.InvalidArgument {
		t.Errorf("create without metadata: %v, want InvalidArgument", err)
	}
	_, err = a.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: "nope", Config: ctrConfig("x", env.images.busybox), SandboxConfig: p.cfg})
	if status.Code(err) != codes.NotFound {
		t.Errorf("create in an unknown pod: %v, want NotFound", err)
	}
	cfg := ctrConfig("twice", env.images.busybox, withCommand("true"))
	first := createContainer(t, a, p, cfg)
	_, err = a.rt.CreateContainer(ctx, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	if status.Code(err) != codes.AlreadyExists || !strings.Contains(err.Error(), first) {
		t.Errorf("duplicate container name: %v, want AlreadyExists naming %s", err, first)
	}
	_, err = a.rt.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: "nope"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("start unknown: %v, want NotFound", err)
	}
}

// The container's memory limit reaches its cgroup.
func TestContainerMemoryLimit(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "mem"))
	c := ctrConfig("limited", env.images.busybox, withMemoryLimit(64<<20),
		withShell("cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max"))
	id := runContainer(t, a, p, c)
	waitExited(t, a, id, 30*time.Second)
	got := strings.TrimSpace(logText(readLog(t, logPath(p, c)), "stdout"))
	if got != strconv.Itoa(64<<20) {
		t.Fatalf("memory limit inside = %q, want %d", got, 64<<20)
	}
	if st := containerStatus(t, a, id); st.Resources.GetLinux().GetMemoryLimitInBytes() != 64<<20 {
		t.Errorf("status resources = %v", st.Resources)
	}
}

// Kill -9 the agent: running containers are untouched, their logs have no
// gap, and a container that exits while the agent is down reports its real
// exit code once the agent is back.
func TestAgentKill9KeepsContainers(t *testing.T) {
	a := newAgent(t, agentOptions{})
	p := runPod(t, a, podConfig(t, "survivor"))
	ticker := ctrConfig("ticker", env.images.busybox, withShell("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"))
	tickID := runContainer(t, a, p, ticker)
	late := ctrConfig("late", env.images.busybox, withShell("sleep 2; exit 7"))
	lateID := runContainer(t, a, p, late)
	waitLog(t, logPath(p, ticker), "tick 3", 30*time.Second)

	must(t, a.kill9(), "kill agent")
	killed := time.Now()
	time.Sleep(3 * time.Second) // "late" exits while no agent is running
	restarted := time.Now()
	must(t, a.start(), "restart agent")

	if st := containerStatus(t, a, tickID); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("ticker after restart: %s", st.State)
	}
	st := waitExited(t, a, lateID, 10*time.Second)
	if st.ExitCode != 7 {
		t.Errorf("late container exit code %d, want 7", st.ExitCode)
	}
	// No gap: every tick number appears, in order, up to the latest.
	time.Sleep(500 * time.Millisecond)
	lines := readLog(t, logPath(p, ticker))
	out := logText(lines, "stdout")
	n := strings.Count(out, "tick ")
	for i := 0; i < n; i++ {
		if !strings.Contains(out, fmt.Sprintf("tick %d\n", i)) {
			t.Fatalf("log lost tick %d of %d across the agent's death:\n%s", i, n, out)
		}
	}
	// A restarted container would count from 0 again; a paused one would have written
	// nothing while the agent was dead (however slowly a loaded machine runs the loop).
	if c := strings.Count(out, "tick 0\n"); c != 1 {
		t.Errorf("tick 0 logged %d times: the container was restarted", c)
	}
	whileDead := 0
	for _, l := range lines {
		if l.time.After(killed) && l.time.Before(restarted) {
			whileDead++
		}
	}
	if whileDead == 0 {
		t.Errorf("no tick logged while the agent was dead (%d ticks in all): the container was paused", n)
	}
	// The pod still works after the restart: a new container runs in it.
	c := ctrConfig("after", env.images.busybox, withCommand("true"))
	if st := waitExited(t, a, runContainer(t, a, p, c), 30*time.Second); st.ExitCode != 0 {
		t.Errorf("container after restart exited %d", st.ExitCode)
	}
}

// A failed create leaves nothing behind: no mount of the container is left.
func TestContainerCreateFailureLeavesNoMount(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "failcreate"))
	cfg := ctrConfig("nocmd", env.images.busybox, func(c *runtimeapi.ContainerConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: []string{"CAP_NOT_A_THING"}}}
	})
	_, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("unknown capability: %v, want InvalidArgument", err)
	}
	entries, _ := os.ReadDir(filepath.Join(a.state, "containers"))
	if len(entries) != 0 {
		t.Errorf("failed create left bundles: %v", entries)
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), filepath.Join(a.state, "containers")) {
		t.Errorf("failed create left a rootfs mount")
	}
}

// SIGTERM stops the agent, not the containers: they keep running and writing
// their logs, and the restarted agent finds them as they are.
func TestAgentSIGTERMLeavesContainersRunning(t *testing.T) {
	a := newAgent(t, agentOptions{})
	p := runPod(t, a, podConfig(t, "sigterm"))
	c := ctrConfig("ticker", env.images.busybox, withShell("i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.1; done"))
	id := runContainer(t, a, p, c)
	waitLog(t, logPath(p, c), "tick 3", 30*time.Second)

	must(t, a.stop(), "stop agent with SIGTERM")
	before := strings.Count(logText(readLog(t, logPath(p, c)), "stdout"), "tick ")
	time.Sleep(time.Second)
	if after := strings.Count(logText(readLog(t, logPath(p, c)), "stdout"), "tick "); after <= before {
		t.Fatalf("container stopped writing after the agent's SIGTERM: %d ticks, then %d", before, after)
	}
	must(t, a.start(), "restart agent")
	if st := containerStatus(t, a, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Fatalf("after restart: %s", st.State)
	}
}
