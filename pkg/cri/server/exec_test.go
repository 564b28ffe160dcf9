package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// The fake shim's exec half: a running container echoes the command; execShim below scripts
// other outcomes.

func (f *fakeShim) running(id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.ctr(id)
	if err != nil {
		return err
	}
	if c.st.Status != shimRunning {
		return fmt.Errorf("container %s is %s: %w", id, c.st.Status, errdefs.ErrFailedPrecondition)
	}
	return nil
}

func (f *fakeShim) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration, maxOutput int) (ShimExecSyncResult, error) {
	if err := f.running(id); err != nil {
		return ShimExecSyncResult{}, err
	}
	return ShimExecSyncResult{Stdout: []byte(strings.Join(cmd, " "))}, nil
}

func (f *fakeShim) Exec(ctx context.Context, id string, o ShimExecOptions) (ShimExecResult, error) {
	if err := f.running(id); err != nil {
		return ShimExecResult{}, err
	}
	if o.Stdout != nil {
		fmt.Fprint(o.Stdout, strings.Join(o.Cmd, " "))
	}
	return ShimExecResult{}, nil
}

func (f *fakeShim) Attach(ctx context.Context, id string, tty bool, s ShimStreams) error {
	return f.running(id)
}

// execShim replaces the fake shim's ExecSync and Exec results.
type execShim struct {
	*fakeShim
	syncRes ShimExecSyncResult
	execRes ShimExecResult
	err     error
	got     ShimExecOptions

	gotMaxOutput int
}

func (x *execShim) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration, maxOutput int) (ShimExecSyncResult, error) {
	x.gotMaxOutput = maxOutput
	return x.syncRes, x.err
}

func (x *execShim) Exec(ctx context.Context, id string, o ShimExecOptions) (ShimExecResult, error) {
	x.got = o
	return x.execRes, x.err
}

// runningContainer starts a pod and a running container in it; stdin and tty as given.
func (e *testEnv) runningContainer(t *testing.T, stdin, tty bool) (podID, id string) {
	t.Helper()
	pod := podConfig("p")
	podID = e.runPod(t, pod)
	cfg := containerConfig("app")
	cfg.Stdin, cfg.Tty = stdin, tty
	id = e.createContainer(t, podID, pod, cfg)
	if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	return podID, id
}

// scripted puts an execShim in front of the pod's fake shim.
func (e *testEnv) scripted(t *testing.T, podID string, x *execShim) *execShim {
	t.Helper()
	x.fakeShim = e.shims.get(e.svc.shimDir(podID))
	e.svc.setClient(podID, x)
	return x
}

func TestExecSync(t *testing.T) {
	deadline := fmt.Errorf("shim exec: %w", context.DeadlineExceeded)
	tests := []struct {
		name      string
		timeout   int64
		shim      execShim
		ctxDone   bool
		want      *runtimeapi.ExecSyncResponse
		wantInErr string // "" = success
		wantClass func(error) bool
	}{
		{
			name: "output and exit code pass through",
			shim: execShim{syncRes: ShimExecSyncResult{Stdout: []byte("out"), Stderr: []byte("err"), ExitCode: 3}},
			want: &runtimeapi.ExecSyncResponse{Stdout: []byte("out"), Stderr: []byte("err"), ExitCode: 3},
		},
		{
			name: "timeout keeps the output so far and fails with 137", timeout: 1,
			shim: execShim{syncRes: ShimExecSyncResult{Stdout: []byte("partial")}, err: deadline},
			want: &runtimeapi.ExecSyncResponse{Stdout: []byte("partial"), Stderr: []byte("berth: command timed out after 1s and was killed\n"), ExitCode: 137},
		},
		{
			name: "timeout keeps the shim's exit code", timeout: 2,
			shim: execShim{syncRes: ShimExecSyncResult{Stderr: []byte("e\n"), ExitCode: 143}, err: deadline},
			want: &runtimeapi.ExecSyncResponse{Stderr: []byte("e\nberth: command timed out after 2s and was killed\n"), ExitCode: 143},
		},
		{
			name: "the caller's own deadline stays an error", timeout: 5, ctxDone: true,
			shim:      execShim{err: deadline},
			wantInErr: "exec sync in container", wantClass: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
		},
		{
			name:      "deadline without a timeout is an error",
			shim:      execShim{err: deadline},
			wantInErr: "exec sync in container", wantClass: func(err error) bool { return errors.Is(err, context.DeadlineExceeded) },
		},
		{
			name:      "a command that cannot start is an error",
			shim:      execShim{err: errors.New("exec: \"nope\": executable file not found")},
			wantInErr: "executable file not found", wantClass: func(err error) bool { return !errdefs.IsNotFound(err) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			podID, id := e.runningContainer(t, false, false)
			e.scripted(t, podID, &tt.shim)
			ctx := context.Background()
			if tt.ctxDone {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, time.Now().Add(-time.Second))
				defer cancel()
			}
			resp, err := e.svc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"true"}, Timeout: tt.timeout})
			if tt.wantInErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantInErr) || !tt.wantClass(err) {
					t.Fatalf("err = %v, want one containing %q of the right class", err, tt.wantInErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(resp.Stdout, tt.want.Stdout) || !bytes.Equal(resp.Stderr, tt.want.Stderr) || resp.ExitCode != tt.want.ExitCode {
				t.Fatalf("resp = stdout %q stderr %q code %d, want %q %q %d", resp.Stdout, resp.Stderr, resp.ExitCode, tt.want.Stdout, tt.want.Stderr, tt.want.ExitCode)
			}
		})
	}
}

func TestExecBadInput(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	_, running := e.runningContainer(t, false, false)
	pod := podConfig("p2")
	pod2 := e.runPod(t, pod)
	created := e.createContainer(t, pod2, pod, containerConfig("created"))
	stopped := e.createContainer(t, pod2, pod, containerConfig("stopped"))
	if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: stopped}); err != nil {
		t.Fatal(err)
	}
	e.shims.get(e.svc.shimDir(pod2)).exit(stopped, 0)
	c, _ := e.svc.store.Containers.Get(stopped)
	waitFor(t, func() bool { return c.Status().State == store.ContainerExited })

	type call func(id string, cmd []string) error
	calls := map[string]call{
		"ExecSync": func(id string, cmd []string) error {
			_, err := e.svc.ExecSync(ctx, &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: cmd})
			return err
		},
		"Exec": func(id string, cmd []string) error {
			_, err := e.svc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: cmd, Stdout: true})
			return err
		},
		"Attach": func(id string, cmd []string) error {
			_, err := e.svc.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdout: true})
			return err
		},
	}
	tests := []struct {
		name  string
		id    string
		cmd   []string
		class func(error) bool
		skip  string // call that does not take a command
	}{
		{name: "unknown id", id: "nosuchcontainer", cmd: []string{"ls"}, class: errdefs.IsNotFound},
		{name: "no id", cmd: []string{"ls"}, class: errdefs.IsInvalidArgument},
		{name: "created container", id: created, cmd: []string{"ls"}, class: errdefs.IsFailedPrecondition},
		{name: "stopped container", id: stopped, cmd: []string{"ls"}, class: errdefs.IsFailedPrecondition},
		{name: "no command", id: running, class: errdefs.IsInvalidArgument, skip: "Attach"},
	}
	for _, tt := range tests {
		for name, fn := range calls {
			if name == tt.skip {
				continue
			}
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				if err := fn(tt.id, tt.cmd); !tt.class(err) {
					t.Fatalf("err = %v, want another class", err)
				}
			})
		}
	}
}

func TestStreamingURLs(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	podID, id := e.runningContainer(t, true, false)
	base := "http://" + e.svc.streaming.addr + "/"
	if !strings.HasPrefix(base, "http://127.0.0.1:") || strings.HasSuffix(base, ":0/") {
		t.Fatalf("streaming server advertises %s, want loopback with a real port", base)
	}
	short := id[:12]
	execResp, err := e.svc.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: short, Cmd: []string{"sh"}, Stdin: true, Stdout: true})
	if err != nil || !strings.HasPrefix(execResp.Url, base+"exec/") {
		t.Fatalf("Exec = %v, %v; want a URL under %sexec/", execResp, err, base)
	}
	attachResp, err := e.svc.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
	if err != nil || !strings.HasPrefix(attachResp.Url, base+"attach/") {
		t.Fatalf("Attach = %v, %v", attachResp, err)
	}
	if _, err := e.svc.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Tty: true, Stdout: true}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("Attach with a tty to a container without one = %v, want InvalidArgument", err)
	}
	pfResp, err := e.svc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{80}})
	if err != nil || !strings.HasPrefix(pfResp.Url, base+"portforward/") {
		t.Fatalf("PortForward = %v, %v", pfResp, err)
	}
	for _, tt := range []struct {
		name  string
		req   *runtimeapi.PortForwardRequest
		class func(error) bool
	}{
		{"unknown sandbox", &runtimeapi.PortForwardRequest{PodSandboxId: "nosuchpod"}, errdefs.IsNotFound},
		{"no sandbox", &runtimeapi.PortForwardRequest{}, errdefs.IsInvalidArgument},
		{"port out of range", &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{70000}}, errdefs.IsInvalidArgument},
	} {
		if _, err := e.svc.PortForward(ctx, tt.req); !tt.class(err) {
			t.Errorf("PortForward %s = %v, want another class", tt.name, err)
		}
	}
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: podID}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.PortForward(ctx, &runtimeapi.PortForwardRequest{PodSandboxId: podID}); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("PortForward to a stopped pod = %v, want FailedPrecondition", err)
	}
}

func TestStreamRuntimeExec(t *testing.T) {
	tests := []struct {
		name     string
		shim     execShim
		wantCode int // -1 = success
	}{
		{name: "zero exit is success", wantCode: -1},
		{name: "non-zero exit becomes the streaming exit error", shim: execShim{execRes: ShimExecResult{ExitCode: 7}}, wantCode: 7},
		{name: "killed", shim: execShim{execRes: ShimExecResult{ExitCode: 137}}, wantCode: 137},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			podID, id := e.runningContainer(t, false, true)
			x := e.scripted(t, podID, &tt.shim)
			resize := make(chan remotecommand.TerminalSize)
			close(resize)
			var out nopWriteCloser
			err := streamRuntime{e.svc}.Exec(context.Background(), id, []string{"sh"}, nil, &out, nil, true, resize)
			if tt.wantCode < 0 {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				// The streaming package type-asserts, it does not unwrap.
				exitErr, ok := err.(utilexec.ExitError)
				if !ok || !exitErr.Exited() || exitErr.ExitStatus() != tt.wantCode {
					t.Fatalf("err = %#v, want a utilexec.ExitError with code %d", err, tt.wantCode)
				}
			}
			if !x.got.Tty || x.got.Stdout == nil || x.got.Stderr != nil || x.got.Stdin != nil || x.got.Resize == nil {
				t.Fatalf("shim got %+v: want tty, stdout and resize only", x.got)
			}
		})
	}
}

type nopWriteCloser struct{ bytes.Buffer }

func (*nopWriteCloser) Close() error { return nil }

func TestRelaySizesEnds(t *testing.T) {
	in := make(chan int, 1)
	out, stop := relaySizes(in, func(i int) string { return fmt.Sprint(i) })
	in <- 1
	if got := <-out; got != "1" {
		t.Fatalf("relayed %q", got)
	}
	// A pending size nobody reads must not keep the relay alive after stop.
	in <- 2
	time.Sleep(10 * time.Millisecond)
	stop()
	stop()
	for range out {
	}
	if nilOut, stopNil := relaySizes[int, string](nil, nil); nilOut != nil {
		t.Fatal("nil source gave a channel")
	} else {
		stopNil()
	}
}

// pipeStream is the client's side of a port-forward stream.
type pipeStream struct {
	io.Reader
	io.Writer
}

func (pipeStream) Close() error { return nil }

func TestPipeHalfClose(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// The pod answers only once the request is complete (its read hit EOF).
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		req, _ := io.ReadAll(c)
		fmt.Fprintf(c, "got %s", req)
	}()
	conn, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	var resp bytes.Buffer
	if err := pipe(context.Background(), pipeStream{strings.NewReader("ping"), &resp}, conn); err != nil {
		t.Fatal(err)
	}
	if resp.String() != "got ping" {
		t.Fatalf("response %q, want %q", resp.String(), "got ping")
	}
}

func TestAdvertised(t *testing.T) {
	for _, tt := range []struct {
		in   *net.TCPAddr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("127.0.0.1"), Port: 5}, "127.0.0.1:5"},
		{&net.TCPAddr{IP: net.IPv4zero, Port: 5}, "127.0.0.1:5"},
		{&net.TCPAddr{IP: net.IPv6unspecified, Port: 5}, "[::1]:5"},
		{&net.TCPAddr{IP: net.ParseIP("10.0.0.2"), Port: 10010}, "10.0.0.2:10010"},
	} {
		if got := advertised(tt.in); got != tt.want {
			t.Errorf("advertised(%v) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestFirstSize(t *testing.T) {
	sent := make(chan remotecommand.TerminalSize, 1)
	sent <- remotecommand.TerminalSize{Width: 80, Height: 24}
	closed := make(chan remotecommand.TerminalSize)
	close(closed)
	silent := make(chan remotecommand.TerminalSize)
	for _, tt := range []struct {
		name    string
		ch      chan remotecommand.TerminalSize
		want    ShimTermSize
		maxWait time.Duration
	}{
		{"first size is the initial size", sent, ShimTermSize{Width: 80, Height: 24}, time.Second},
		{"closed channel", closed, ShimTermSize{}, 100 * time.Millisecond},
		{"silent client is waited for briefly", silent, ShimTermSize{}, initialSizeWait + time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			if got := firstSize(context.Background(), tt.ch); got != tt.want {
				t.Fatalf("firstSize = %+v, want %+v", got, tt.want)
			}
			if d := time.Since(start); d > tt.maxWait {
				t.Fatalf("firstSize took %s", d)
			}
		})
	}
}

func TestWatchedConnEndsItsContext(t *testing.T) {
	tests := []struct {
		name   string
		end    func(client net.Conn, wc *watchedConn)
		cancel bool
	}{
		{name: "client leaves", end: func(client net.Conn, wc *watchedConn) {
			client.Close()
			_, _ = wc.Read(make([]byte, 1))
		}, cancel: true},
		{name: "server closes", end: func(_ net.Conn, wc *watchedConn) { wc.Close() }, cancel: true},
		{name: "read deadline is not the client leaving", end: func(_ net.Conn, wc *watchedConn) {
			_ = wc.SetReadDeadline(time.Now().Add(-time.Second))
			_, _ = wc.Read(make([]byte, 1))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			set := &connSet{m: map[*watchedConn]struct{}{}}
			wl := watchListener{ln, set}
			defer wl.Close()
			client, err := net.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			c, err := wl.Accept()
			if err != nil {
				t.Fatal(err)
			}
			wc := c.(*watchedConn)
			defer wc.Close()
			ctx := watchConn(context.Background(), wc)
			tt.end(client, wc)
			select {
			case <-ctx.Done():
				if !tt.cancel {
					t.Fatal("context ended")
				}
				if !errors.Is(context.Cause(ctx), errClientGone) {
					t.Fatalf("cause %v", context.Cause(ctx))
				}
			case <-time.After(200 * time.Millisecond):
				if tt.cancel {
					t.Fatal("context still alive")
				}
			}
		})
	}
}

func TestStreamingOff(t *testing.T) {
	e := newTestEnv(t)
	e.svc.Close()
	e.cfg.Streaming.Address = ""
	e.svc = e.newService(t)
	_, id := e.runningContainer(t, false, false)
	if e.svc.streaming != nil {
		t.Fatal("streaming server started with no address")
	}
	if _, err := e.svc.Exec(context.Background(), &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"ls"}, Stdout: true}); !errdefs.IsUnavailable(err) {
		t.Fatalf("Exec with streaming off = %v, want Unavailable", err)
	}
	// ExecSync does not need it.
	if _, err := e.svc.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"ls"}}); err != nil {
		t.Fatal(err)
	}
}
