package shim

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

// shimBinary is built once by TestMain from ./cmd/shim.
var shimBinary string

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	dir, err := os.MkdirTemp("", "berth-shim-bin")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	shimBinary = filepath.Join(dir, "berth-shim")
	build := exec.Command("go", "build", "-o", shimBinary, "../../cmd/shim")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build shim:", err)
		return 1
	}
	code := m.Run()
	if os.Geteuid() == 0 {
		if err := runtimetest.RemoveCgroupRoot(); err != nil {
			fmt.Fprintln(os.Stderr, "cgroups left by the tests:", err)
			return 1
		}
	}
	return code
}

type shimEnv struct {
	opts StartOptions
	c    *Client
}

// startShim spawns a real shim; cleanup kills its containers, shuts it down
// and, if that fails, kills the process.
func startShim(t *testing.T) *shimEnv {
	t.Helper()
	runtimetest.Require(t)
	base := t.TempDir()
	opts := StartOptions{
		Binary:      shimBinary,
		SandboxID:   "sb-" + strconv.Itoa(os.Getpid()),
		Dir:         filepath.Join(base, "shims", "sb"),
		RuntimeRoot: filepath.Join(base, "runc"),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	c, err := Start(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	e := &shimEnv{opts: opts, c: c}
	pid := c.Pid()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		cl, err := Connect(ctx, opts.Dir)
		if err == nil {
			states, _ := cl.List(ctx)
			for _, st := range states {
				_ = cl.Kill(ctx, st.ID, syscall.SIGKILL, true)
				_, _ = cl.Wait(ctx, st.ID)
				if err := cl.Delete(ctx, st.ID); err != nil {
					t.Errorf("cleanup delete %s: %v", st.ID, err)
				}
			}
			if err := cl.Shutdown(ctx); err != nil {
				t.Errorf("cleanup shutdown: %v", err)
			}
		}
		if processRunning(pid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		e.c.Close()
	})
	return e
}

func (e *shimEnv) bundle(t *testing.T, name string, args []string) (CreateRequest, string) {
	t.Helper()
	id := name + "-" + strconv.Itoa(os.Getpid())
	spec := runtimetest.Spec(args, runtimetest.CgroupPath(t, id))
	return CreateRequest{
		ID:      id,
		Bundle:  runtimetest.Bundle(t, spec),
		LogPath: filepath.Join(t.TempDir(), id+".log"),
	}, id
}

func TestShimLifecycle(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	st, err := os.Stat(filepath.Join(e.opts.Dir, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", st.Mode().Perm())
	}
	pidData, err := os.ReadFile(filepath.Join(e.opts.Dir, PidName))
	if err != nil || strings.TrimSpace(string(pidData)) != strconv.Itoa(e.c.Pid()) {
		t.Errorf("shim.pid = %q (%v), want %d", pidData, err, e.c.Pid())
	}
	if _, err := Start(ctx, e.opts); !errdefs.IsAlreadyExists(err) {
		t.Errorf("second Start: %v, want already exists", err)
	}

	req, id := e.bundle(t, "echo", []string{"sh", "-c", "echo hello; echo oops >&2; exit 5"})
	pid, err := e.c.Create(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if s, err := e.c.State(ctx, id); err != nil || s.Status != StatusCreated || s.Pid != pid {
		t.Fatalf("state after create = %+v, %v", s, err)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	s, err := e.c.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.Status != StatusStopped || s.ExitCode != 5 || s.Reason != "Error" || s.FinishedAt.IsZero() {
		t.Errorf("wait = %+v, want stopped with 5", s)
	}
	log, err := os.ReadFile(req.LogPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{" stdout F hello\n", " stderr F oops\n"} {
		if !strings.Contains(string(log), want) {
			t.Errorf("log %q lacks %q", log, want)
		}
	}
	list, err := e.c.List(ctx)
	if err != nil || len(list) != 1 || list[0].ID != id {
		t.Errorf("list = %+v, %v", list, err)
	}
	if err := e.c.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Delete(ctx, id); err != nil {
		t.Errorf("delete of a missing container: %v", err)
	}
}

func TestShimErrorsKeepTheirClass(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, id := e.bundle(t, "sleeper", []string{"sleep", "1000"})
	if _, err := e.c.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		call func() error
		is   func(error) bool
	}{
		{"state of unknown", func() error { _, err := e.c.State(ctx, "nope"); return err }, errdefs.IsNotFound},
		{"start of unknown", func() error { return e.c.Start(ctx, "nope") }, errdefs.IsNotFound},
		{"duplicate create", func() error { _, err := e.c.Create(ctx, req); return err }, errdefs.IsAlreadyExists},
		{"delete running", func() error { return e.c.Delete(ctx, id) }, errdefs.IsFailedPrecondition},
		{"shutdown with containers", func() error { return e.c.Shutdown(ctx) }, errdefs.IsFailedPrecondition},
		{"create without bundle", func() error { _, err := e.c.Create(ctx, CreateRequest{ID: "x"}); return err }, errdefs.IsInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); !tt.is(err) {
				t.Errorf("err = %v", err)
			}
		})
	}
	limit := int64(32 << 20)
	if err := e.c.Update(ctx, id, &specs.LinuxResources{Memory: &specs.LinuxMemory{Limit: &limit}}); err != nil {
		t.Errorf("update: %v", err)
	}
	if err := e.c.ReopenLog(ctx, id); err != nil {
		t.Errorf("reopen log: %v", err)
	}
}

// TestShimSurvivesClient drops the agent's connection while a container
// runs, reconnects, and checks the exit code reported afterwards.
func TestShimSurvivesClient(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, id := e.bundle(t, "survivor", []string{"sh", "-c", "trap 'exit 9' TERM; sleep 1000 & wait"})
	if _, err := e.c.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	// A Wait in flight when the connection drops must not hurt the shim.
	waitErr := make(chan error, 1)
	go func() { _, err := e.c.Wait(ctx, id); waitErr <- err }()
	time.Sleep(100 * time.Millisecond)
	if err := e.c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-waitErr; !errdefs.IsUnavailable(err) {
		t.Errorf("wait on a closed client: %v, want unavailable", err)
	}
	// An abrupt disconnect of a raw socket, as when the agent is SIGKILLed.
	raw, err := net.Dial("unix", filepath.Join(e.opts.Dir, SocketName))
	if err != nil {
		t.Fatal(err)
	}
	raw.Write([]byte{0, 0, 0})
	raw.Close()

	c, err := Connect(ctx, e.opts.Dir)
	if err != nil {
		t.Fatal(err)
	}
	e.c = c
	if c.Pid() <= 0 || !processRunning(c.Pid()) {
		t.Fatalf("shim pid %d not running", c.Pid())
	}
	s, err := c.State(ctx, id)
	if err != nil || s.Status != StatusRunning {
		t.Fatalf("state after reconnect = %+v, %v", s, err)
	}
	if err := c.Kill(ctx, id, syscall.SIGTERM, false); err != nil {
		t.Fatal(err)
	}
	s, err = c.Wait(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if s.ExitCode != 9 || s.Status != StatusStopped {
		t.Errorf("exit after reconnect = %+v, want 9", s)
	}
	if err := c.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	shimPid := c.Pid()
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if processRunning(shimPid) {
		t.Errorf("shim %d still running after Shutdown", shimPid)
	}
	if _, err := os.Stat(filepath.Join(e.opts.Dir, SocketName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Shutdown: %v", err)
	}
	if _, err := Connect(ctx, e.opts.Dir); !errdefs.IsNotFound(err) {
		t.Errorf("connect after shutdown: %v, want not found", err)
	}
}

func TestShimShutdownCleansUp(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cg := runtimetest.CgroupPath(t, "shim-podinit-"+strconv.Itoa(os.Getpid()))
	pid, err := e.c.StartPodInit(ctx, PodInitRequest{CgroupPath: cg})
	if err != nil {
		t.Fatal(err)
	}
	if !processRunning(pid) {
		t.Fatalf("pod init %d not running", pid)
	}
	// A stopped container left behind is deleted by Shutdown.
	req, id := e.bundle(t, "leftover", []string{"true"})
	if _, err := e.c.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Wait(ctx, id); err != nil {
		t.Fatal(err)
	}
	shimPid := e.c.Pid()
	if err := e.c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if processRunning(pid) || processRunning(shimPid) {
		t.Errorf("pod init %d or shim %d survived Shutdown", pid, shimPid)
	}
	for _, d := range runtimetest.CgroupDirs(t, runtimetest.CgroupRoot+"/"+id) {
		if runtimetest.Exists(d) {
			t.Errorf("cgroup %s of the leftover container survived Shutdown", d)
		}
	}
}

func TestShimExitsOnSIGTERMOnlyWhenIdle(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, id := e.bundle(t, "busy", []string{"sleep", "1000"})
	if _, err := e.c.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	pid := e.c.Pid()
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if _, err := e.c.State(ctx, id); err != nil {
		t.Fatalf("shim gone after SIGTERM with a running container: %v", err)
	}
	if err := e.c.Kill(ctx, id, syscall.SIGKILL, false); err != nil {
		t.Fatal(err)
	}
	if s, err := e.c.Wait(ctx, id); err != nil || s.ExitCode != 137 {
		t.Fatalf("wait = %+v, %v", s, err)
	}
	if err := e.c.Delete(ctx, id); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := waitGone(ctx, pid); err != nil {
		t.Fatal(err)
	}
}

// A shim that dies before serving fails Start at once: the ready pipe ends without its line
// (no waiting out the start timeout for a socket that will never come).
func TestStartShimDiesBeforeServing(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "shim")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := Start(ctx, StartOptions{Binary: "/bin/true", SandboxID: "dies", Dir: dir, RuntimeRoot: t.TempDir()})
	// Not the deadline: the end of the pipe told.
	if err == nil || !strings.Contains(err.Error(), "exited before serving") {
		t.Fatalf("Start = %v, want the shim to have exited before serving", err)
	}
}
