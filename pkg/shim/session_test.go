package shim

import (
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

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

// running creates and starts a container in the shim.
func (e *shimEnv) running(t *testing.T, ctx context.Context, name string, args []string, mod func(*CreateRequest)) string {
	t.Helper()
	req, id := e.bundle(t, name, args)
	if mod != nil {
		mod(&req)
	}
	if _, err := e.c.Create(ctx, req); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Start(ctx, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestShimExecSync(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := e.running(t, ctx, "execsync", []string{"sh", "-c", "while :; do sleep 1; done"}, nil)
	stopped := e.running(t, ctx, "stopped", []string{"true"}, nil)
	if _, err := e.c.Wait(ctx, stopped); err != nil {
		t.Fatal(err)
	}

	res, err := e.c.ExecSync(ctx, id, []string{"sh", "-c", "echo out; echo err >&2; exit 3"}, 10*time.Second, 1<<20)
	if err != nil || string(res.Stdout) != "out\n" || string(res.Stderr) != "err\n" || res.ExitCode != 3 {
		t.Errorf("exec sync = %q %q %d, %v", res.Stdout, res.Stderr, res.ExitCode, err)
	}
	// More output than one ttrpc message may carry.
	res, err = e.c.ExecSync(ctx, id, []string{"sh", "-c", "head -c 6000000 /dev/zero"}, 20*time.Second, 8<<20)
	if err != nil || len(res.Stdout) != 6000000 || res.StdoutDropped != 0 {
		t.Errorf("large output: %d bytes (%d dropped), %v", len(res.Stdout), res.StdoutDropped, err)
	}
	// Beyond maxOutput the rest is read, dropped and counted; the command still ends normally.
	res, err = e.c.ExecSync(ctx, id, []string{"sh", "-c", "head -c 3000000 /dev/zero; head -c 5 /dev/zero >&2; exit 4"}, 20*time.Second, 1<<20)
	if err != nil || len(res.Stdout) != 1<<20 || res.StdoutDropped != 3000000-1<<20 || len(res.Stderr) != 5 || res.StderrDropped != 0 || res.ExitCode != 4 {
		t.Errorf("capped output: %d bytes (%d dropped), stderr %d (%d dropped), exit %d, %v",
			len(res.Stdout), res.StdoutDropped, len(res.Stderr), res.StderrDropped, res.ExitCode, err)
	}
	res, err = e.c.ExecSync(ctx, id, []string{"sh", "-c", "echo started; sleep 103 & sleep 103"}, 500*time.Millisecond, 1<<20)
	if !errors.Is(err, context.DeadlineExceeded) || string(res.Stdout) != "started\n" {
		t.Errorf("timeout: %q, %v", res.Stdout, err)
	}
	runtimetest.WaitFor(t, "no sleep 103", func() bool { return !cmdlineRunning("sleep\x00103\x00") })

	tests := []struct {
		name string
		id   string
		is   func(error) bool
	}{
		{"unknown id", "nope", errdefs.IsNotFound},
		{"stopped container", stopped, errdefs.IsFailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := e.c.ExecSync(ctx, tt.id, []string{"true"}, time.Second, 1<<20); !tt.is(err) {
				t.Errorf("exec: %v", err)
			}
			if err := e.c.Attach(ctx, tt.id, false, Streams{Stdout: io.Discard}); !tt.is(err) {
				t.Errorf("attach: %v", err)
			}
		})
	}
	if _, err := e.c.ExecSync(ctx, id, []string{"/no/such/binary"}, time.Second, 1<<20); err == nil {
		t.Error("exec of a missing binary succeeded")
	}
	e.checkNoSessions(t, ctx)
}

// cmdlineRunning reports whether a live (non-zombie) process has cmdline.
func cmdlineRunning(cmdline string) bool {
	for _, pid := range pidsWithCmdline(cmdline) {
		if processRunning(pid) {
			return true
		}
	}
	return false
}

func TestShimExecInteractive(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := e.running(t, ctx, "execio", []string{"sleep", "1000"}, nil)

	var out runtimetest.SyncBuffer
	res, err := e.c.Exec(ctx, id, ExecOptions{Cmd: []string{"cat"}, Streams: Streams{Stdin: strings.NewReader("hi\n"), Stdout: &out}})
	if err != nil || res.ExitCode != 0 || out.String() != "hi\n" {
		t.Errorf("echo hi | cat: %q %d %v", out.String(), res.ExitCode, err)
	}

	var tty runtimetest.SyncBuffer
	inR, inW := io.Pipe()
	defer inW.Close()
	resize := make(chan TermSize, 1)
	done := make(chan error, 1)
	go func() {
		res, err := e.c.Exec(ctx, id, ExecOptions{Cmd: []string{"sh"}, Tty: true, Size: TermSize{Width: 90, Height: 20},
			Streams: Streams{Stdin: inR, Stdout: &tty, Resize: resize}})
		if err == nil && res.ExitCode != 5 {
			err = errors.New("bad exit code")
		}
		done <- err
	}()
	io.WriteString(inW, "stty size; echo typed-$((2+2))\n")
	runtimetest.WaitFor(t, "tty output", func() bool { s := tty.String(); return strings.Contains(s, "20 90") && strings.Contains(s, "typed-4") })
	resize <- TermSize{Width: 132, Height: 43}
	io.WriteString(inW, "stty size\n")
	runtimetest.WaitFor(t, "resize", func() bool { return strings.Contains(tty.String(), "43 132") })
	io.WriteString(inW, "exit 5\n")
	if err := <-done; err != nil {
		t.Error(err)
	}
	e.checkNoSessions(t, ctx)
}

func TestShimAttach(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := e.running(t, ctx, "attach", []string{"sh", "-c", "while read l; do echo got-$l; done; echo bye"},
		func(r *CreateRequest) { r.Stdin, r.StdinOnce = true, true })
	var out runtimetest.SyncBuffer
	inR, inW := io.Pipe()
	done := make(chan error, 1)
	go func() { done <- e.c.Attach(ctx, id, false, Streams{Stdin: inR, Stdout: &out, Stderr: io.Discard}) }()
	runtimetest.WaitFor(t, "session", func() bool { d, _ := e.c.Debug(ctx); return d.Sessions == 1 })
	// The streams connect asynchronously: resend until the echo shows up.
	runtimetest.WaitFor(t, "live output", func() bool {
		if strings.Contains(out.String(), "got-x") {
			return true
		}
		io.WriteString(inW, "x\n")
		time.Sleep(100 * time.Millisecond)
		return false
	})
	inW.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out.String(), "bye\n") {
		t.Errorf("attach output = %q", out.String())
	}
	if st, err := e.c.Wait(ctx, id); err != nil || st.ExitCode != 0 {
		t.Errorf("exit %+v %v", st, err)
	}
	e.checkNoSessions(t, ctx)
}

// TestShimClientDisconnect drops the agent side mid-stream: the exec'd
// process dies, attach detaches, and no session, goroutine or fd remains.
func TestShimClientDisconnect(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := e.running(t, ctx, "disconnect", []string{"sh", "-c", "while :; do echo tick; sleep 0.2; done"}, nil)
	// The first round warms up what the shim opens lazily (libcontainer
	// caches, runtime threads); the baseline is taken after it.
	var before DebugInfo
	for round := range 4 {
		if round == 1 {
			runtimetest.WaitFor(t, "idle after warm-up", func() bool { d, err := e.c.Debug(ctx); return err == nil && d.Sessions == 0 })
			var err error
			if before, err = e.c.Debug(ctx); err != nil {
				t.Fatal(err)
			}
		}
		sctx, scancel := context.WithCancel(ctx)
		inR, inW := io.Pipe()
		var out runtimetest.SyncBuffer
		execDone := make(chan error, 1)
		go func() {
			_, err := e.c.Exec(sctx, id, ExecOptions{Cmd: []string{"sh", "-c", "echo ready; sleep 104"},
				Streams: Streams{Stdin: inR, Stdout: &out, Stderr: io.Discard}})
			execDone <- err
		}()
		var att runtimetest.SyncBuffer
		attDone := make(chan error, 1)
		go func() { attDone <- e.c.Attach(sctx, id, false, Streams{Stdout: &att, Stderr: io.Discard}) }()
		runtimetest.WaitFor(t, "exec and attach streaming", func() bool {
			return strings.Contains(out.String(), "ready") && strings.Contains(att.String(), "tick")
		})
		scancel()
		inW.Close()
		if err := <-execDone; !errors.Is(err, context.Canceled) {
			t.Errorf("exec after disconnect: %v", err)
		}
		if err := <-attDone; !errors.Is(err, context.Canceled) {
			t.Errorf("attach after disconnect: %v", err)
		}
	}
	runtimetest.WaitFor(t, "sessions, goroutines and fds back to idle", func() bool {
		d, err := e.c.Debug(ctx)
		return err == nil && d.Sessions == 0 && d.Execs == 0 && d.Goroutines <= before.Goroutines && d.FDs <= before.FDs
	})
	if cmdlineRunning("sleep\x00104\x00") {
		t.Error("exec'd process survived the disconnect")
	}
	if st, err := e.c.State(ctx, id); err != nil || st.Status != StatusRunning {
		t.Errorf("container after detach: %+v %v", st, err)
	}
}

func TestShimStats(t *testing.T) {
	e := startShim(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := e.running(t, ctx, "stats", []string{"sleep", "1000"}, nil)
	// pids.current counts tasks: until the init has exec'd sleep, runc init's threads are
	// there too (Start returns once the exec is under way, not done).
	var st Stats
	for {
		var err error
		if st, err = e.c.Stats(ctx, id); err != nil {
			t.Fatal(err)
		}
		if st.PidsCurrent == 1 || ctx.Err() != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st.MemoryUsageBytes == 0 || st.CPUUsageNanos == 0 || st.PidsCurrent != 1 || st.Timestamp.IsZero() {
		t.Errorf("stats = %+v", st)
	}
	if _, err := e.c.Stats(ctx, "nope"); !errdefs.IsNotFound(err) {
		t.Errorf("stats of unknown: %v", err)
	}
}

func (e *shimEnv) checkNoSessions(t *testing.T, ctx context.Context) {
	t.Helper()
	runtimetest.WaitFor(t, "no sessions", func() bool {
		d, err := e.c.Debug(ctx)
		return err == nil && d.Sessions == 0 && d.Execs == 0
	})
}

func pidsWithCmdline(cmdline string) []int {
	matches, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	var out []int
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil || string(data) != cmdline {
			continue
		}
		if pid, err := strconv.Atoi(filepath.Base(filepath.Dir(m))); err == nil {
			out = append(out, pid)
		}
	}
	return out
}
