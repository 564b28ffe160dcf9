package runtime

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

// startRunning creates and starts a container running args.
func (e *testEnv) startRunning(t *testing.T, name string, args []string, opts ...containerOpt) string {
	t.Helper()
	id, _ := e.create(t, name, args, opts...)
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	return id
}

func withEnvCwd(env []string, cwd string) containerOpt {
	return func(s *specs.Spec, _ *CreateOptions) { s.Process.Env = env; s.Process.Cwd = cwd }
}

func TestExecSync(t *testing.T) {
	e := newTestManager(t)
	id := e.startRunning(t, "execsync", []string{"sleep", "1000"}, withEnvCwd([]string{"PATH=/bin", "GREETING=hello"}, "/tmp"))
	tests := []struct {
		name     string
		args     []string
		wantOut  string
		wantErr  string
		wantCode int32
	}{
		{name: "stdout and exit code", args: []string{"sh", "-c", "echo out; exit 3"}, wantOut: "out\n", wantCode: 3},
		{name: "stderr", args: []string{"sh", "-c", "echo err >&2"}, wantErr: "err\n"},
		{name: "container env and cwd", args: []string{"sh", "-c", "echo $GREETING; pwd"}, wantOut: "hello\n/tmp\n"},
		{name: "killed by signal", args: []string{"sh", "-c", "kill -9 $$"}, wantCode: 137},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := e.m.ExecSync(context.Background(), id, tt.args, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if string(res.Stdout) != tt.wantOut || string(res.Stderr) != tt.wantErr || res.ExitCode != tt.wantCode {
				t.Errorf("got out %q err %q code %d, want %q %q %d", res.Stdout, res.Stderr, res.ExitCode, tt.wantOut, tt.wantErr, tt.wantCode)
			}
		})
	}
	if n := e.m.ExecCount(); n != 0 {
		t.Errorf("%d execs still supervised", n)
	}
}

func TestExecErrors(t *testing.T) {
	e := newTestManager(t)
	running := e.startRunning(t, "execerr-run", []string{"sleep", "1000"})
	stopped := e.startRunning(t, "execerr-stop", []string{"true"})
	e.wait(t, stopped)
	created, _ := e.create(t, "execerr-created", []string{"sleep", "1000"})
	tests := []struct {
		name string
		id   string
		args []string
		is   func(error) bool
	}{
		{name: "unknown id", id: "nope", args: []string{"true"}, is: errdefs.IsNotFound},
		{name: "stopped container", id: stopped, args: []string{"true"}, is: errdefs.IsFailedPrecondition},
		{name: "created container", id: created, args: []string{"true"}, is: errdefs.IsFailedPrecondition},
		{name: "no command", id: running, is: errdefs.IsInvalidArgument},
		{name: "missing binary", id: running, args: []string{"/no/such"}, is: func(err error) bool { return err != nil }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.m.ExecSync(context.Background(), tt.id, tt.args, time.Second)
			if !tt.is(err) {
				t.Errorf("err = %v", err)
			}
		})
	}
}

// procsRunning lists live or zombie processes whose cmdline is args.
func procsMatching(args ...string) (live, zombies []int) {
	want := strings.Join(args, "\x00") + "\x00"
	entries, _ := os.ReadDir("/proc")
	for _, ent := range entries {
		pid, err := strconv.Atoi(ent.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", ent.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i > 0 && len(stat) > i+2 && stat[i+2] == 'Z' {
			if bytes.Contains(stat, []byte("(sleep)")) {
				zombies = append(zombies, pid)
			}
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join("/proc", ent.Name(), "cmdline"))
		if string(cmd) == want {
			live = append(live, pid)
		}
	}
	return live, zombies
}

func TestExecSyncTimeoutKillsTree(t *testing.T) {
	e := newTestManager(t)
	// A shell as init reaps what is reparented to it, as a pod init does.
	id := e.startRunning(t, "exectimeout", []string{"sh", "-c", "while :; do sleep 1; done"})
	start := time.Now()
	res, err := e.m.ExecSync(context.Background(), id,
		[]string{"sh", "-c", "echo started; sleep 101 & sleep 101; echo never"}, 500*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("timeout took %s", d)
	}
	if string(res.Stdout) != "started\n" {
		t.Errorf("output so far = %q", res.Stdout)
	}
	runtimetest.WaitFor(t, "no sleep 101 left", func() bool {
		live, zombies := procsMatching("sleep", "101")
		return len(live) == 0 && len(zombies) == 0
	})
	if n := e.m.ExecCount(); n != 0 {
		t.Errorf("%d execs still supervised", n)
	}
}

func TestExecCancelKills(t *testing.T) {
	e := newTestManager(t)
	id := e.startRunning(t, "execcancel", []string{"sleep", "1000"})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := e.m.Exec(ctx, id, ExecOptions{Args: []string{"sleep", "102"}, Stdin: blockingReader{}})
		done <- err
	}()
	runtimetest.WaitFor(t, "exec running", func() bool { live, _ := procsMatching("sleep", "102"); return len(live) == 1 })
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("err = %v, want canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("exec did not return after cancel")
	}
	if live, _ := procsMatching("sleep", "102"); len(live) != 0 {
		t.Errorf("exec'd process %v survived", live)
	}
}

// blockingReader never returns, like a client that sends no stdin.
type blockingReader struct{}

func (blockingReader) Read([]byte) (int, error) { select {} }

func TestExecInteractive(t *testing.T) {
	e := newTestManager(t)
	id := e.startRunning(t, "execio", []string{"sleep", "1000"})
	t.Run("stdin", func(t *testing.T) {
		var out runtimetest.SyncBuffer
		res, err := e.m.Exec(context.Background(), id, ExecOptions{
			Args: []string{"cat"}, Stdin: strings.NewReader("hi\n"), Stdout: &out,
		})
		if err != nil || res.ExitCode != 0 || out.String() != "hi\n" {
			t.Errorf("out %q code %d err %v", out.String(), res.ExitCode, err)
		}
	})
	t.Run("tty", func(t *testing.T) {
		var out runtimetest.SyncBuffer
		inR, inW := io.Pipe()
		resize := make(chan TermSize)
		done := make(chan error, 1)
		go func() {
			res, err := e.m.Exec(context.Background(), id, ExecOptions{
				Args: []string{"sh"}, Tty: true, Stdin: inR, Stdout: &out,
				Size: TermSize{Width: 100, Height: 30}, Resize: resize,
			})
			if err == nil && res.ExitCode != 4 {
				err = errors.New("exit code " + strconv.Itoa(int(res.ExitCode)))
			}
			done <- err
		}()
		io.WriteString(inW, "stty size; echo typed-$((1+2))\n")
		runtimetest.WaitFor(t, "initial size and typed output", func() bool {
			return strings.Contains(out.String(), "30 100") && strings.Contains(out.String(), "typed-3")
		})
		resize <- TermSize{Width: 120, Height: 40}
		io.WriteString(inW, "stty size\n")
		runtimetest.WaitFor(t, "resized", func() bool { return strings.Contains(out.String(), "40 120") })
		io.WriteString(inW, "exit 4\n")
		if err := <-done; err != nil {
			t.Error(err)
		}
		inW.Close()
	})
}

func TestAttach(t *testing.T) {
	e := newTestManager(t)
	id, logPath := e.create(t, "attach", []string{"sh", "-c", "while read l; do echo got-$l; echo err-$l >&2; done; echo bye"},
		func(_ *specs.Spec, o *CreateOptions) { o.Stdin = true; o.StdinOnce = true })
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	var out, errOut runtimetest.SyncBuffer
	inR, inW := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- e.m.Attach(context.Background(), id, AttachOptions{Stdin: inR, Stdout: &out, Stderr: &errOut})
	}()
	runtimetest.WaitFor(t, "attached", func() bool { return e.m.AttachCount(id) == 1 })
	io.WriteString(inW, "a\n")
	runtimetest.WaitFor(t, "live output", func() bool {
		return out.String() == "got-a\n" && errOut.String() == "err-a\n"
	})
	// StdinOnce: the end of the client's stdin is the container's EOF.
	inW.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("attach did not end with the container")
	}
	if st := e.wait(t, id); st.ExitCode != 0 {
		t.Errorf("exit %+v", st)
	}
	if out.String() != "got-a\nbye\n" {
		t.Errorf("attached stdout = %q", out.String())
	}
	if lines := logLines(t, logPath); !containsInOrder(lines, []string{"stdout F got-a", "stderr F err-a", "stdout F bye"}) {
		t.Errorf("log = %q", lines)
	}
	if n := e.m.AttachCount(id); n != 0 {
		t.Errorf("%d clients still attached", n)
	}
	if err := e.m.Attach(context.Background(), id, AttachOptions{}); !errdefs.IsFailedPrecondition(err) {
		t.Errorf("attach to stopped: %v", err)
	}
}

func TestAttachDetachOnCancel(t *testing.T) {
	e := newTestManager(t)
	id := e.startRunning(t, "detach", []string{"sh", "-c", "while :; do echo tick; sleep 0.2; done"}, withTty())
	var out runtimetest.SyncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.m.Attach(ctx, id, AttachOptions{Stdout: &out}) }()
	runtimetest.WaitFor(t, "tty output", func() bool { return strings.Contains(out.String(), "tick\r\n") })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := e.m.AttachCount(id); n != 0 {
		t.Errorf("%d clients attached after cancel", n)
	}
	if st, _ := e.m.State(id); st.Status != StatusRunning {
		t.Errorf("container %s after detach", st.Status)
	}
}

func TestStats(t *testing.T) {
	e := newTestManager(t)
	id := e.startRunning(t, "stats", []string{"sh", "-c", "i=0; while [ $i -lt 20000 ]; do i=$((i+1)); done; sleep 1000"},
		withMemoryLimit(64<<20))
	time.Sleep(500 * time.Millisecond)
	st, err := e.m.Stats(id)
	if err != nil {
		t.Fatal(err)
	}
	if st.CPUUsageNanos == 0 || st.MemoryUsageBytes == 0 || st.MemoryWorkingSetBytes == 0 ||
		st.MemoryWorkingSetBytes > st.MemoryUsageBytes || st.PidsCurrent < 1 || st.MemoryLimitBytes != 64<<20 {
		t.Errorf("stats = %+v", st)
	}
	if _, err := e.m.Stats("nope"); !errdefs.IsNotFound(err) {
		t.Errorf("stats of unknown: %v", err)
	}
}

// TestChildOOMIsNotContainerOOM: a child killed by the OOM killer while the
// init survives and exits 0 is Completed, not OOMKilled.
func TestChildOOMIsNotContainerOOM(t *testing.T) {
	e := newTestManager(t)
	id, logPath := e.create(t, "childoom", []string{"sh", "-c", "tail /dev/zero; echo survived"}, withMemoryLimit(32<<20))
	if err := e.m.Start(id); err != nil {
		t.Fatal(err)
	}
	st := e.wait(t, id)
	if st.ExitCode != 0 || st.OOMKilled || st.Reason != ReasonCompleted {
		t.Errorf("status = %+v, want Completed 0", st)
	}
	if lines := logLines(t, logPath); !containsInOrder(lines, []string{"stderr F Killed", "stdout F survived"}) {
		t.Errorf("log = %q", lines)
	}
}
