package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// handlerConfig configures a builtin handler whose RuntimeDefault seccomp profile is
// unconfined, and crun as an external runtime when the node has it (hack/deps.sh installs it).
func handlerConfig(t *testing.T) (cfg, crun string) {
	cfg = "[[runtime.handlers]]\nname = \"loose\"\nseccomp_profile = \"unconfined\"\n"
	crun, err := exec.LookPath("crun")
	if err != nil {
		t.Logf("no crun on this node (hack/deps.sh installs it): the external handler is not checked")
		return cfg, ""
	}
	return cfg + fmt.Sprintf("\n[[runtime.handlers]]\nname = \"crun\"\nruntime = %q\n", crun), crun
}

// The same pod (a log line, an exec, a stop with the container's exit code, stats) runs on
// the default handler, on a configured one, each with its own seccomp default, and on an
// external runtime (crun); an unknown handler is NotFound.
func TestRuntimeHandlers(t *testing.T) {
	cfg, crun := handlerConfig(t)
	a := newAgent(t, agentOptions{config: cfg})

	st, err := a.rt.Status(ctxT(t), &runtimeapi.StatusRequest{})
	must(t, err, "status")
	listed := map[string]*runtimeapi.RuntimeHandlerFeatures{}
	for _, h := range st.RuntimeHandlers {
		listed[h.Name] = h.Features
	}
	for _, name := range []string{"", "runc", "loose"} {
		if _, ok := listed[name]; !ok {
			t.Errorf("Status lacks handler %q: %v", name, st.RuntimeHandlers)
		}
	}
	if listed["loose"].GetUserNamespaces() != listed[""].GetUserNamespaces() {
		t.Errorf("handler loose features %v differ from the default's %v", listed["loose"], listed[""])
	}

	for _, tc := range []struct{ handler, seccomp string }{{"", "2"}, {"loose", "0"}} {
		t.Run("handler="+tc.handler, func(t *testing.T) { handlerPodLifecycle(t, a, tc.handler, tc.seccomp) })
	}

	if crun != "" {
		if f, ok := listed["crun"]; !ok || f.GetUserNamespaces() || f.GetRecursiveReadOnlyMounts() {
			t.Errorf("handler crun listed %v with %v, want listed with no features", ok, f)
		}
		// crun applies the same RuntimeDefault profile (moby's) as the builtin runtime.
		t.Run("handler=crun", func(t *testing.T) { handlerPodLifecycle(t, a, "crun", "2") })
		t.Run("handler=crun/exits", func(t *testing.T) { externalPodExits(t, a, "crun") })
	}
	resp, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: podConfig(t, "unknown"), RuntimeHandler: "kata"})
	if err == nil {
		runPodCleanup(t, a, resp.PodSandboxId)
	}
	if status.Code(err) != codes.NotFound || !strings.Contains(err.Error(), `"kata"`) {
		t.Errorf("RunPodSandbox(handler kata) = %v, want NotFound naming it", err)
	}
}

func handlerPodLifecycle(t *testing.T, a *agent, handler, wantSeccomp string) {
	p := runPodOn(t, a, podConfig(t, "handler"), handler)
	cfg := ctrConfig("c", env.images.busybox,
		withShell(`echo hello from the handler; trap 'exit 7' TERM; while :; do sleep 0.1; done`),
		withSecurityContext(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.Seccomp = profile(runtimeapi.SecurityProfile_RuntimeDefault, "")
		}))
	id := runContainer(t, a, p, cfg)
	waitLog(t, logPath(p, cfg), "hello from the handler", 30*time.Second)

	out, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/proc/self/status"}, Timeout: 30})
	must(t, err, "exec")
	if out.ExitCode != 0 {
		t.Fatalf("exec exit code %d: %s", out.ExitCode, out.Stderr)
	}
	if got := statusFields(string(out.Stdout))["Seccomp"]; got != wantSeccomp {
		t.Errorf("handler %q: a RuntimeDefault container has Seccomp %q, want %q", handler, got, wantSeccomp)
	}

	stats, err := a.rt.ContainerStats(ctxT(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	must(t, err, "stats")
	if stats.GetStats().GetMemory().GetWorkingSetBytes().GetValue() == 0 {
		t.Errorf("stats of a running container have no memory working set: %v", stats.GetStats())
	}

	_, err = a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 20})
	must(t, err, "stop")
	if st := waitExited(t, a, id, 30*time.Second); st.ExitCode != 7 {
		t.Errorf("exit code %d (reason %s), want 7 from the TERM trap", st.ExitCode, st.Reason)
	}
}

// A handler whose runtime binary is missing fails the agent's startup, naming the handler and
// the path: a node that cannot serve a configured RuntimeClass must not come up Ready.
func TestRuntimeHandlerMissingBinary(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-runtime")
	cfgPath := filepath.Join(dir, "config.toml")
	cfg := fmt.Sprintf("[nri]\nenable = false\n\n[[runtime.handlers]]\nname = \"gone\"\nruntime = %q\n", missing)
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o644), "write config")
	state, err := os.MkdirTemp("/run", "berth-e2e-")
	must(t, err, "state dir")
	t.Cleanup(func() { os.RemoveAll(state) })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, env.berthBin, "--config", cfgPath, "--root", filepath.Join(dir, "root"),
		"--state", state, "--listen", filepath.Join(state, "berth.sock"), "--shim-binary", env.shimBin)
	out, err := cmd.CombinedOutput()
	if err == nil || ctx.Err() != nil {
		t.Fatalf("agent with a missing runtime binary: err %v (ctx %v), want a failed startup:\n%s", err, ctx.Err(), out)
	}
	for _, want := range []string{`runtime handler "gone"`, missing} {
		if !strings.Contains(string(out), want) {
			t.Errorf("startup error lacks %q:\n%s", want, out)
		}
	}
}

// externalPodExits checks on an external runtime what the kubelet sees of containers that
// end by themselves: exit codes, ExecSync's exit code and output, leftovers in the pod's PID
// namespace killed, an exec in the container's cgroup, an update, an OOM kill, what it
// refuses (a tty), and that removed containers and pods leave no runtime state or cgroup.
func externalPodExits(t *testing.T, a *agent, handler string) {
	p := runPodOn(t, a, podConfig(t, "external", withPodPID(runtimeapi.NamespaceMode_POD)), handler)

	c := ctrConfig("exits", env.images.busybox, withShell("sleep 999 & echo leaving; exit 3"))
	id := runContainer(t, a, p, c)
	st := waitExited(t, a, id, 30*time.Second)
	if st.ExitCode != 3 || st.Reason != "Error" {
		t.Errorf("exit %d reason %q, want 3 Error", st.ExitCode, st.Reason)
	}
	if left := podProcs(t, p.id, "sleep 999"); len(left) > 0 {
		t.Errorf("container %s reported exited, %q still runs: %+v", id, "sleep 999", left)
	}
	if out := logText(readLog(t, logPath(p, c)), "stdout"); out != "leaving\n" {
		t.Errorf("log %q, want the line written before the exit", out)
	}
	cgroup := filepath.Join(memoryHierarchy(), specCgroup(t, a, id))
	if _, err := os.Stat(cgroup); err != nil {
		t.Errorf("memory cgroup of the exited container: %v", err)
	}
	_, err := a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	must(t, err, "remove %s", id)
	if _, err := os.Stat(cgroup); !os.IsNotExist(err) {
		t.Errorf("memory cgroup %s of the removed container: %v, want it gone", cgroup, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(a.state, "shims", p.id, "oci")); len(entries) != 0 {
		t.Errorf("runtime state left by the removed container: %v", entries)
	}

	long := ctrConfig("runs", env.images.busybox, withShell("echo up; exec sleep 999"))
	id = runContainer(t, a, p, long)
	waitLog(t, logPath(p, long), "up", 30*time.Second)
	out, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "echo out; echo err >&2; exit 5"}, Timeout: 30})
	must(t, err, "exec")
	if out.ExitCode != 5 || string(out.Stdout) != "out\n" || string(out.Stderr) != "err\n" {
		t.Errorf("ExecSync = exit %d stdout %q stderr %q, want 5 \"out\\n\" \"err\\n\"", out.ExitCode, out.Stdout, out.Stderr)
	}
	cg, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "/proc/self/cgroup"}, Timeout: 30})
	must(t, err, "exec cat /proc/self/cgroup")
	if want := specCgroup(t, a, id); memoryHierarchy() == "/sys/fs/cgroup/memory" && !strings.Contains(string(cg.Stdout), "memory:"+want+"\n") {
		t.Errorf("exec'd process is in cgroups\n%s\nwant the container's memory cgroup %s", cg.Stdout, want)
	}
	_, err = a.rt.UpdateContainerResources(ctxT(t), &runtimeapi.UpdateContainerResourcesRequest{ContainerId: id,
		Linux: &runtimeapi.LinuxContainerResources{MemoryLimitInBytes: 64 << 20}})
	must(t, err, "update")
	if memoryHierarchy() == "/sys/fs/cgroup/memory" {
		limit, err := os.ReadFile(filepath.Join(memoryHierarchy(), specCgroup(t, a, id), "memory.limit_in_bytes"))
		if err != nil || strings.TrimSpace(string(limit)) != fmt.Sprint(64<<20) {
			t.Errorf("memory limit after update = %q (%v), want %d", limit, err, 64<<20)
		}
	}
	tty := ctrConfig("tty", env.images.busybox, withShell("true"))
	tty.Tty = true
	if resp, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: tty, SandboxConfig: p.cfg}); status.Code(err) != codes.Unimplemented {
		t.Errorf("CreateContainer(tty) on %s = %v, %v; want Unimplemented", handler, resp, err)
	}

	// The memory limit set at create holds, and its OOM kill is reported as such.
	oom := ctrConfig("oom", env.images.busybox, withMemoryLimit(32<<20), withShell("exec tail /dev/zero"))
	if st := waitExited(t, a, runContainer(t, a, p, oom), 60*time.Second); st.ExitCode != 137 || st.Reason != "OOMKilled" {
		t.Errorf("container over its memory limit: exit %d reason %q, want 137 OOMKilled", st.ExitCode, st.Reason)
	}
	// A container created and never started is removed with its runtime state.
	idle := createContainer(t, a, p, ctrConfig("idle", env.images.busybox, withShell("true")))
	_, err = a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: idle})
	must(t, err, "remove created container")
	if _, err := os.Stat(filepath.Join(a.state, "shims", p.id, "oci", idle)); !os.IsNotExist(err) {
		t.Errorf("runtime state of the removed created container: %v, want it gone", err)
	}

	shimDir := filepath.Join(a.state, "shims", p.id)
	_, err = a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "stop pod")
	if st := containerStatus(t, a, id); st.State != runtimeapi.ContainerState_CONTAINER_EXITED || st.ExitCode == 0 {
		t.Errorf("container of a stopped pod is %s exit %d, want exited by a signal", st.State, st.ExitCode)
	}
	_, err = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "remove pod")
	if _, err := os.Stat(shimDir); !os.IsNotExist(err) {
		entries, _ := os.ReadDir(filepath.Join(shimDir, "oci"))
		t.Errorf("removed pod's shim directory %s: %v; runtime state left: %v", shimDir, err, entries)
	}
	if left := podProcs(t, p.id, "sleep 999"); len(left) > 0 {
		t.Errorf("removed pod's processes still run: %+v", left)
	}
}

// specCgroup is the cgroup path the container's spec names.
func specCgroup(t *testing.T, a *agent, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(a.state, "containers", id, "config.json"))
	if err != nil {
		t.Fatalf("spec of %s: %v", id, err)
	}
	var sp struct {
		Linux struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(b, &sp); err != nil || sp.Linux.CgroupsPath == "" {
		t.Fatalf("spec of %s names no cgroup: %v", id, err)
	}
	return sp.Linux.CgroupsPath
}

// memoryHierarchy is where the memory controller's cgroups are: its v1 mount, or the unified one.
func memoryHierarchy() string {
	if _, err := os.Stat("/sys/fs/cgroup/memory"); err == nil {
		return "/sys/fs/cgroup/memory"
	}
	return "/sys/fs/cgroup"
}
