package runtime

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // runs before Go when re-executed as init
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

// TestMain doubles as the container init and the pod init: libcontainer
// re-executes /proc/self/exe (this test binary) with "init".
func TestMain(m *testing.M) {
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "init":
			libcontainer.Init()
		case PodInitArg:
			os.Exit(PodInitMain())
		}
	}
	if os.Geteuid() == 0 {
		if err := SetSubreaper(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		if err := runtimetest.RemoveCgroupRoot(); err != nil {
			fmt.Fprintln(os.Stderr, "cgroups left by the tests:", err)
			code = 1
		}
	}
	os.Exit(code)
}

type testEnv struct {
	m    *Manager
	root string
}

func newTestManager(t *testing.T, opts ...func(*Options)) *testEnv {
	t.Helper()
	runtimetest.Require(t)
	dir := t.TempDir()
	o := Options{
		Root:     filepath.Join(dir, "runc"),
		StateDir: filepath.Join(dir, "state"),
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	for _, f := range opts {
		f(&o)
	}
	m, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	go m.Run(ctx)
	t.Cleanup(func() {
		cancel()
		for _, st := range m.List() {
			_ = m.Kill(st.ID, syscall.SIGKILL, true)
			dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, _ = m.Wait(dctx, st.ID)
			if err := m.Delete(dctx, st.ID); err != nil {
				t.Errorf("cleanup delete %s: %v", st.ID, err)
			}
			dcancel()
		}
		if err := m.Close(context.Background()); err != nil {
			t.Errorf("close manager: %v", err)
		}
	})
	return &testEnv{m: m, root: dir}
}

type containerOpt func(*specs.Spec, *CreateOptions)

func withTty() containerOpt {
	return func(s *specs.Spec, o *CreateOptions) { o.Tty = true; s.Process.Terminal = true }
}

func withMemoryLimit(bytes int64) containerOpt {
	return func(s *specs.Spec, _ *CreateOptions) {
		s.Linux.Resources.Memory = &specs.LinuxMemory{Limit: &bytes}
	}
}

func withOOMScoreAdj(v int) containerOpt {
	return func(s *specs.Spec, _ *CreateOptions) { s.Process.OOMScoreAdj = &v }
}

// create makes a busybox container running args and returns its id and log path.
func (e *testEnv) create(t *testing.T, name string, args []string, opts ...containerOpt) (string, string) {
	t.Helper()
	id := name + "-" + strconv.Itoa(os.Getpid())
	spec := runtimetest.Spec(args, runtimetest.CgroupPath(t, id))
	co := CreateOptions{ID: id, LogPath: filepath.Join(e.root, id+".log")}
	for _, o := range opts {
		o(spec, &co)
	}
	co.Bundle = runtimetest.Bundle(t, spec)
	pid, err := e.m.Create(co)
	if err != nil {
		t.Fatalf("create %s: %v", id, err)
	}
	if pid <= 0 {
		t.Fatalf("create %s: pid %d", id, pid)
	}
	return id, co.LogPath
}

func (e *testEnv) wait(t *testing.T, id string) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	st, err := e.m.Wait(ctx, id)
	if err != nil {
		t.Fatalf("wait %s: %v", id, err)
	}
	return st
}

func TestContainerExit(t *testing.T) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		t.Fatal(err)
	}
	ownAdj, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	ownAdj = min(ownAdj, 999)
	tests := []struct {
		name       string
		args       []string
		opts       []containerOpt
		wantCode   int32
		wantReason string
		wantLog    []string // "<stream> <tag> <content>" in order per stream
	}{
		{
			name:       "output and exit code",
			args:       []string{"sh", "-c", "echo out; echo err >&2; printf tail; exit 3"},
			wantCode:   3,
			wantReason: ReasonError,
			wantLog:    []string{"stdout F out", "stderr F err", "stdout P tail"},
		},
		{
			name:       "success",
			args:       []string{"sh", "-c", "id -u"},
			wantCode:   0,
			wantReason: ReasonCompleted,
			wantLog:    []string{"stdout F 0"},
		},
		{
			name:       "tty output is stdout",
			args:       []string{"sh", "-c", "echo on-tty"},
			opts:       []containerOpt{withTty()},
			wantCode:   0,
			wantReason: ReasonCompleted,
			wantLog:    []string{"stdout F on-tty\r"},
		},
		{
			// Raising it needs no privilege; the shim applies the spec as written (the
			// agent fits it to the node beforehand).
			name:       "oom_score_adj is applied",
			args:       []string{"sh", "-c", "cat /proc/self/oom_score_adj"},
			opts:       []containerOpt{withOOMScoreAdj(ownAdj + 1)},
			wantCode:   0,
			wantReason: ReasonCompleted,
			wantLog:    []string{"stdout F " + strconv.Itoa(ownAdj+1)},
		},
	}
	e := newTestManager(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, logPath := e.create(t, "exit"+strconv.Itoa(i), tt.args, tt.opts...)
			if st, _ := e.m.State(id); st.Status != StatusCreated {
				t.Fatalf("status after create = %q", st.Status)
			}
			if err := e.m.Start(id); err != nil {
				t.Fatal(err)
			}
			st := e.wait(t, id)
			if st.Status != StatusStopped || st.ExitCode != tt.wantCode || st.Reason != tt.wantReason {
				t.Errorf("status = %+v, want stopped code %d reason %s", st, tt.wantCode, tt.wantReason)
			}
			if st.FinishedAt.Before(st.StartedAt) || st.StartedAt.Before(st.CreatedAt) {
				t.Errorf("times out of order: %+v", st)
			}
			got := logLines(t, logPath)
			if !containsInOrder(got, tt.wantLog) {
				t.Errorf("log = %q, want %q in order", got, tt.wantLog)
			}
			if err := e.m.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// logLines returns "<stream> <tag> <content>" of every CRI line, timestamp checked.
func logLines(t *testing.T, path string) []string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range parseCRILog(t, data) {
		tag := "F"
		if l.partial {
			tag = "P"
		}
		out = append(out, l.stream+" "+tag+" "+l.content)
	}
	return out
}

// containsInOrder checks that want appears in got in order per stream.
func containsInOrder(got, want []string) bool {
	for _, stream := range []string{"stdout", "stderr"} {
		var g, w []string
		for _, l := range got {
			if strings.HasPrefix(l, stream) {
				g = append(g, l)
			}
		}
		for _, l := range want {
			if strings.HasPrefix(l, stream) {
				w = append(w, l)
			}
		}
		if strings.Join(g, "\n") != strings.Join(w, "\n") {
			return false
		}
	}
	return true
}

func TestKill(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		signal   syscall.Signal
		all      bool
		wantCode int32
	}{
		{name: "sigkill", args: []string{"sleep", "1000"}, signal: syscall.SIGKILL, wantCode: 137},
		{name: "sigterm trapped", args: []string{"sh", "-c", "trap 'exit 7' TERM; sleep 1000 & wait"}, signal: syscall.SIGTERM, wantCode: 7},
		{name: "sigkill all", args: []string{"sh", "-c", "sleep 1000 & sleep 1000"}, signal: syscall.SIGKILL, all: true, wantCode: 137},
	}
	e := newTestManager(t)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id, _ := e.create(t, "kill"+strconv.Itoa(i), tt.args)
			if err := e.m.Start(id); err != nil {
				t.Fatal(err)
			}
			st, _ := e.m.State(id)
			if st.Status != StatusRunning {
				t.Fatalf("status = %q, want running", st.Status)
			}
			// Let the shell install its trap before signalling.
			time.Sleep(300 * time.Millisecond)
			if err := e.m.Kill(id, tt.signal, tt.all); err != nil {
				t.Fatal(err)
			}
			st = e.wait(t, id)
			if st.ExitCode != tt.wantCode || st.OOMKilled {
				t.Errorf("status = %+v, want code %d", st, tt.wantCode)
			}
			if err := e.m.Kill(id, syscall.SIGKILL, false); err != nil {
				t.Errorf("kill of a stopped container: %v", err)
			}
		})
	}
}

func TestDeleteCleansUp(t *testing.T) {
	e := newTestManager(t)
	id, _ := e.create(t, "delete", []string{"sleep", "1000"})
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	st, _ := e.m.State(id)
	ctx := context.Background()
	if err := e.m.Delete(ctx, id); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("delete of running container: %v, want failed precondition", err)
	}
	cgroupDirs := runtimetest.CgroupDirs(t, runtimetest.CgroupRoot+"/"+id)
	if !runtimetest.Exists(cgroupDirs[0]) {
		t.Fatalf("cgroup %s missing while running", cgroupDirs[0])
	}
	if err := e.m.Kill(id, syscall.SIGKILL, true); err != nil {
		t.Fatal(err)
	}
	e.wait(t, id)
	if err := e.m.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if runtimetest.Alive(st.Pid) {
		t.Errorf("init %d still alive", st.Pid)
	}
	for _, d := range cgroupDirs {
		if runtimetest.Exists(d) {
			t.Errorf("cgroup %s left behind", d)
		}
	}
	if runtimetest.Exists(filepath.Join(e.m.opts.Root, id)) {
		t.Errorf("libcontainer state left behind")
	}
	if _, err := e.m.State(id); !errdefs.IsNotFound(err) {
		t.Errorf("state after delete: %v, want not found", err)
	}
	if err := e.m.Delete(ctx, id); err != nil {
		t.Errorf("second delete: %v", err)
	}
}

func TestDeleteCreatedContainer(t *testing.T) {
	e := newTestManager(t)
	id, _ := e.create(t, "created", []string{"sleep", "1000"})
	st, _ := e.m.State(id)
	if err := e.m.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if runtimetest.Alive(st.Pid) {
		t.Errorf("init %d of a created container still alive", st.Pid)
	}
}

func TestCreateErrors(t *testing.T) {
	e := newTestManager(t)
	id, _ := e.create(t, "dup", []string{"sleep", "1000"})
	tests := []struct {
		name string
		opts CreateOptions
		is   func(error) bool
	}{
		{name: "duplicate id", opts: CreateOptions{ID: id, Bundle: t.TempDir()}, is: errdefs.IsAlreadyExists},
		{name: "no bundle", opts: CreateOptions{ID: "x"}, is: errdefs.IsInvalidArgument},
		{name: "missing config", opts: CreateOptions{ID: "y", Bundle: t.TempDir()}, is: errdefs.IsNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.m.Create(tt.opts)
			if !tt.is(err) {
				t.Fatalf("err = %v", err)
			}
		})
	}
	for _, call := range []func() error{
		func() error { return e.m.Start("nope") },
		func() error { return e.m.Kill("nope", syscall.SIGTERM, false) },
		func() error { _, err := e.m.State("nope"); return err },
		func() error { return e.m.ReopenLog("nope") },
	} {
		if err := call(); !errdefs.IsNotFound(err) {
			t.Errorf("unknown id: err = %v, want not found", err)
		}
	}
}

func TestUpdate(t *testing.T) {
	e := newTestManager(t)
	id, _ := e.create(t, "update", []string{"sleep", "1000"})
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	limit := int64(64 << 20)
	if err := e.m.Update(id, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Fatal(err)
	}
	var memDir string
	for _, d := range runtimetest.CgroupDirs(t, runtimetest.CgroupRoot+"/"+id) {
		if strings.Contains(d, "/memory") {
			memDir = d
		}
	}
	data, err := os.ReadFile(filepath.Join(memDir, "memory.limit_in_bytes"))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(data)); got != strconv.FormatInt(limit, 10) {
		t.Errorf("memory limit = %s, want %d", got, limit)
	}
}

func TestOOMKilled(t *testing.T) {
	e := newTestManager(t)
	// tail keeps the unterminated "line" of /dev/zero in memory until the
	// cgroup's limit kills it; it is the init, so the container is OOM-killed.
	id, _ := e.create(t, "oom", []string{"tail", "/dev/zero"}, withMemoryLimit(64<<20))
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	st := e.wait(t, id)
	if st.ExitCode != 137 || !st.OOMKilled || st.Reason != ReasonOOMKilled {
		t.Errorf("status = %+v, want OOMKilled 137", st)
	}
}

// podInits are the two pod inits: the shim binary's pod-init mode and the static
// cmd/pod-init, compiled here as the Makefile does.
func podInits(t *testing.T) map[string]func(*Options) {
	t.Helper()
	cc, err := exec.LookPath("gcc")
	if err != nil {
		t.Skip("no gcc to build cmd/pod-init")
	}
	bin := filepath.Join(t.TempDir(), "berth-pod-init")
	out, err := exec.Command(cc, "-static", "-Os", "-Wall", "-Wextra", "-Werror", "-o", bin, "../../cmd/pod-init/pod_init.c").CombinedOutput()
	if err != nil {
		t.Fatalf("build cmd/pod-init: %v\n%s", err, out)
	}
	return map[string]func(*Options){
		"go":     func(*Options) {},
		"static": func(o *Options) { o.PodInitBinary = bin },
	}
}

func TestPodInit(t *testing.T) {
	for name, opt := range podInits(t) {
		t.Run(name, func(t *testing.T) { testPodInit(t, newTestManager(t, opt)) })
	}
}

func testPodInit(t *testing.T, e *testEnv) {
	cg := runtimetest.CgroupPath(t, "podinit-"+strconv.Itoa(os.Getpid()))
	pid, err := e.m.StartPodInit(PodInitOptions{CgroupPath: cg})
	if err != nil {
		t.Fatal(err)
	}
	own, _ := os.Readlink("/proc/self/ns/pid")
	theirs, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/pid")
	if err != nil {
		t.Fatal(err)
	}
	if own == theirs {
		t.Errorf("pod init shares the pid namespace %s", own)
	}
	procs, err := os.ReadFile(filepath.Join(runtimetest.CgroupDirs(t, cg)[0], "cgroup.procs"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(procs), strconv.Itoa(pid)) {
		t.Errorf("pod init %d not in cgroup %s: %q", pid, cg, procs)
	}
	if _, err := e.m.StartPodInit(PodInitOptions{}); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second pod init: %v", err)
	}
	// An orphan in the pod's pid namespace is reparented to the init, which must reap it.
	if out, err := exec.Command("nsenter", "-t", strconv.Itoa(pid), "-p", "--", "sh", "-c", "sleep 0.05 & exit 0").CombinedOutput(); err != nil {
		t.Fatalf("orphan in the pod: %v\n%s", err, out)
	}
	runtimetest.WaitFor(t, "the pod init reaped its orphan", func() bool {
		return len(zombieChildren(pid, allPIDs())) == 0 && len(childrenOf(pid)) == 0
	})
	// A container joining the pod's pid namespace sees the pod init as PID 1.
	id := "podmember-" + strconv.Itoa(os.Getpid())
	spec := runtimetest.Spec([]string{"cat", "/proc/1/cmdline"}, runtimetest.CgroupPath(t, id))
	for i, ns := range spec.Linux.Namespaces {
		if ns.Type == specs.PIDNamespace {
			spec.Linux.Namespaces[i].Path = "/proc/" + strconv.Itoa(pid) + "/ns/pid"
		}
	}
	logPath := filepath.Join(e.root, id+".log")
	if _, err := e.m.Create(CreateOptions{ID: id, Bundle: runtimetest.Bundle(t, spec), LogPath: logPath}); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	if st := e.wait(t, id); st.ExitCode != 0 {
		t.Fatalf("member exit %+v", st)
	}
	if lines := logLines(t, logPath); len(lines) != 1 || !strings.Contains(lines[0], "berth-pod-init") {
		t.Errorf("pid 1 of the pod = %q", lines)
	}
	if err := e.m.Delete(context.Background(), id); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if runtimetest.Alive(pid) {
		t.Errorf("pod init %d survived Close", pid)
	}
}

// The pod init joins its cgroup by itself, so a shim killed right after the fork leaves
// no init outside the pod cgroup; a cgroup already gone ends the init.
func TestPodInitJoinsItsOwnCgroup(t *testing.T) {
	for name, opt := range podInits(t) {
		t.Run(name, func(t *testing.T) { testPodInitJoinsItsOwnCgroup(t, newTestManager(t, opt)) })
	}
}

func testPodInitJoinsItsOwnCgroup(t *testing.T, e *testEnv) {
	cg := runtimetest.CgroupPath(t, "podinit-self-"+strconv.Itoa(os.Getpid()))
	dirs := runtimetest.CgroupDirs(t, cg)
	if err := ensureCgroup(cg); err != nil {
		t.Fatal(err)
	}
	// startPodInit alone: no joinCgroup from the shim's side.
	pi, err := e.m.startPodInit(PodInitOptions{CgroupPath: cg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pi.signal(syscall.SIGKILL); <-pi.done })
	pid := strconv.Itoa(pi.pid)
	runtimetest.WaitFor(t, "pod init in its cgroup", func() bool {
		procs, _ := os.ReadFile(filepath.Join(dirs[0], "cgroup.procs"))
		return slices.Contains(strings.Fields(string(procs)), pid)
	})

	missing, err := e.m.startPodInit(PodInitOptions{CgroupPath: cg + "-gone"})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-missing.done:
	case <-time.After(5 * time.Second):
		missing.signal(syscall.SIGKILL)
		t.Fatal("a pod init whose cgroup is gone kept running")
	}
	for _, dir := range runtimetest.CgroupDirs(t, cg+"-gone") {
		if runtimetest.Exists(dir) {
			t.Errorf("the pod init created %s", dir)
		}
	}
}

// When the init of a container that shares a PID namespace exits, what it forked is
// killed before the exit is reported: the kernel kills nothing there.
func TestExitKillsLeftovers(t *testing.T) {
	e := newTestManager(t)
	cg := runtimetest.CgroupPath(t, "leftpod-"+strconv.Itoa(os.Getpid()))
	podPid, err := e.m.StartPodInit(PodInitOptions{CgroupPath: cg})
	if err != nil {
		t.Fatal(err)
	}
	// Before the cgroup's cleanup, which runs ahead of the manager's.
	t.Cleanup(e.m.StopPodInit)
	for _, tt := range []struct {
		name  string
		pidNS string // joined PID namespace; "" = the host's
	}{
		{name: "pod pid namespace", pidNS: "/proc/" + strconv.Itoa(podPid) + "/ns/pid"},
		{name: "host pid namespace"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := "leaver-" + strings.Fields(tt.name)[0] + "-" + strconv.Itoa(os.Getpid())
			cgPath := runtimetest.CgroupPath(t, id)
			spec := runtimetest.Spec([]string{"sh", "-c", "sleep 997 & echo forked; exit 0"}, cgPath)
			spec.Linux.Namespaces = slices.DeleteFunc(spec.Linux.Namespaces, func(ns specs.LinuxNamespace) bool {
				return ns.Type == specs.PIDNamespace
			})
			if tt.pidNS != "" {
				spec.Linux.Namespaces = append(spec.Linux.Namespaces, specs.LinuxNamespace{Type: specs.PIDNamespace, Path: tt.pidNS})
			}
			logPath := filepath.Join(e.root, id+".log")
			if _, err := e.m.Create(CreateOptions{ID: id, Bundle: runtimetest.Bundle(t, spec), LogPath: logPath}); err != nil {
				t.Fatal(err)
			}
			if err := e.m.Start(id); err != nil {
				t.Fatal(err)
			}
			if st := e.wait(t, id); st.ExitCode != 0 || st.Reason != ReasonCompleted {
				t.Fatalf("exit %+v, want 0 Completed", st)
			}
			// Checked at once: the exit is reported only when nothing is left.
			for _, dir := range runtimetest.CgroupDirs(t, cgPath) {
				procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
				if err != nil {
					t.Fatal(err)
				}
				if len(bytes.TrimSpace(procs)) > 0 {
					t.Errorf("container reported stopped, %s still holds %q", dir, procs)
				}
			}
			if live, _ := procsMatching("sleep", "997"); len(live) > 0 {
				t.Errorf("the container's sleep runs on: %v", live)
			}
			if got := logLines(t, logPath); !containsInOrder(got, []string{"stdout F forked"}) {
				t.Errorf("log = %q", got)
			}
			if err := e.m.Delete(context.Background(), id); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestRecordsSurviveRestart(t *testing.T) {
	e := newTestManager(t)
	id, _ := e.create(t, "persist", []string{"sh", "-c", "exit 42"})
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	e.wait(t, id)
	m2, err := New(e.m.opts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m2.State(id)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != StatusStopped || st.ExitCode != 42 {
		t.Errorf("reloaded status = %+v", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if _, err := m2.Wait(ctx, id); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait on reloaded stopped container: %v", err)
	}
}

func TestLostContainerAfterRestart(t *testing.T) {
	e := newTestManager(t)
	id, _ := e.create(t, "lost", []string{"sleep", "1000"})
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	// A second manager over the same state plays a restarted shim: the
	// container is not its child.
	m2, err := New(e.m.opts)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m2.State(id)
	if err != nil || st.Status != StatusUnknown {
		t.Fatalf("state in restarted shim = %+v, %v", st, err)
	}
	if err := m2.Delete(context.Background(), id); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("delete of a live lost container: %v", err)
	}
	if err := m2.Kill(id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err = m2.Wait(ctx, id)
	if err != nil || st.Status != StatusStopped || st.ExitCode != 255 || st.Reason != ReasonUnknown {
		t.Errorf("wait in restarted shim = %+v, %v", st, err)
	}
	// The original owner still saw the real exit.
	if st := e.wait(t, id); st.ExitCode != 137 {
		t.Errorf("owner saw %+v", st)
	}
}

// newUTSNamespace gives a namespace path on a locked thread that unshared
// its UTS namespace; the thread ends with the test.
func newUTSNamespace(t *testing.T, hostname string) string {
	t.Helper()
	pathc := make(chan string)
	done := make(chan struct{})
	t.Cleanup(func() { close(done) })
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := unix.Unshare(unix.CLONE_NEWUTS); err != nil {
			pathc <- ""
			return
		}
		_ = unix.Sethostname([]byte(hostname))
		pathc <- fmt.Sprintf("/proc/%d/task/%d/ns/uts", os.Getpid(), unix.Gettid())
		<-done
	}()
	path := <-pathc
	if path == "" {
		t.Fatal("unshare uts failed")
	}
	return path
}

func TestPodInitJoinsNamespaces(t *testing.T) {
	e := newTestManager(t)
	uts := newUTSNamespace(t, "berth-pod")
	pid, err := e.m.StartPodInit(PodInitOptions{UTSNS: uts, NetNS: "/proc/self/ns/net"})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := os.Readlink(uts)
	got, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/uts")
	if err != nil || got != want {
		t.Errorf("pod init uts ns = %s (%v), want %s", got, err, want)
	}
	host, _ := os.Readlink("/proc/self/ns/uts")
	if host == want {
		t.Fatal("test namespace is the host's")
	}
}

// childrenOf lists the pids whose parent is pid.
func childrenOf(pid int) []int {
	var out []int
	for _, name := range allPIDs() {
		data, err := os.ReadFile("/proc/" + name + "/stat")
		if err != nil {
			continue
		}
		f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
		if len(f) > 1 && f[1] == strconv.Itoa(pid) {
			n, _ := strconv.Atoi(name)
			out = append(out, n)
		}
	}
	return out
}
