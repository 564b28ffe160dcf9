package e2e

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	osexec "os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/websocket"
	"k8s.io/apimachinery/pkg/util/httpstream"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/tools/remotecommand"
	"k8s.io/client-go/transport/spdy"
	"k8s.io/client-go/util/exec"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Exec, attach and port-forward over every transport a client may pick: SPDY (the kubelet),
// WebSocket v4 (older WebSocket clients) and WebSocket v5 (client-go's NewWebSocketExecutor,
// crictl --transport websocket), whose port-forward tunnels SPDY through the WebSocket
// (kubectl port-forward since 1.31). The clients are client-go's own.

// transport builds a client-go executor for a streaming URL.
type transport struct {
	name string
	exec func(u string) (remotecommand.Executor, error)
}

var transports = []transport{
	{"spdy", func(u string) (remotecommand.Executor, error) {
		pu, err := url.Parse(u)
		if err != nil {
			return nil, err
		}
		return remotecommand.NewSPDYExecutor(&rest.Config{}, http.MethodPost, pu)
	}},
	{"websocket-v4", func(u string) (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutorForProtocols(&rest.Config{}, http.MethodGet, u, "v4.channel.k8s.io")
	}},
	{"websocket-v5", func(u string) (remotecommand.Executor, error) {
		return remotecommand.NewWebSocketExecutor(&rest.Config{}, http.MethodGet, u)
	}},
}

// stream runs one session and returns its stdout, stderr and error.
func stream(ctx context.Context, tr transport, u string, stdin string, tty bool) (string, string, error) {
	ex, err := tr.exec(u)
	if err != nil {
		return "", "", err
	}
	var out, errOut bytes.Buffer
	opts := remotecommand.StreamOptions{Stdout: &out, Tty: tty}
	if !tty {
		opts.Stderr = &errOut
	}
	if stdin != "" {
		opts.Stdin = strings.NewReader(stdin)
	}
	err = ex.StreamWithContext(ctx, opts)
	return out.String(), errOut.String(), err
}

func exitCode(err error) int {
	var ce exec.CodeExitError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return -1
}

func TestStreamingExecTransports(t *testing.T) {
	a := env.shared
	_, id := sleeper(t, a)
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx := ctxT(t)
			resp, err := a.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "read l; echo got $l; echo oops >&2; exit 3"}, Stdin: true, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			out, errOut, err := stream(ctx, tr, resp.Url, "hello\n", false)
			if out != "got hello\n" || errOut != "oops\n" || exitCode(err) != 3 {
				t.Fatalf("exec over %s: stdout %q stderr %q err %v; want got hello, oops, exit code 3", tr.name, out, errOut, err)
			}

			resp, err = a.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", "tty; echo on a tty"}, Stdout: true, Tty: true})
			if err != nil {
				t.Fatal(err)
			}
			out, _, err = stream(ctx, tr, resp.Url, "", true)
			if err != nil || !strings.HasPrefix(out, "/dev/pts/") || !strings.Contains(out, "on a tty") {
				t.Fatalf("tty exec over %s: %q, %v", tr.name, out, err)
			}
		})
	}
}

// TestStreamingExecResize: a tty exec sees the client's first size at once and a later
// resize while it runs, over every transport.
func TestStreamingExecResize(t *testing.T) {
	a := env.shared
	_, id := sleeper(t, a)
	// The command prints the size it starts with, waits until it changes, prints it again.
	script := `stty size; while [ "$(stty size)" = "24 80" ]; do sleep 0.1; done; stty size`
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
			defer cancel()
			resp, err := a.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"sh", "-c", script}, Stdout: true, Tty: true})
			if err != nil {
				t.Fatal(err)
			}
			ex, err := tr.exec(resp.Url)
			if err != nil {
				t.Fatal(err)
			}
			var out syncBuffer
			sizes := &scriptedSizes{ctx: ctx, out: &out}
			err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdout: &out, Tty: true, TerminalSizeQueue: sizes})
			got := strings.ReplaceAll(out.String(), "\r", "")
			if err != nil || got != "24 80\n50 100\n" {
				t.Fatalf("tty exec over %s saw sizes %q, %v; want 24 80 then 50 100", tr.name, got, err)
			}
		})
	}
}

// scriptedSizes gives client-go 80x24 at once, then 100x50 once the command has printed
// the first; then nothing until ctx ends.
type scriptedSizes struct {
	ctx  context.Context
	out  *syncBuffer
	sent int
}

func (q *scriptedSizes) Next() *remotecommand.TerminalSize {
	q.sent++
	switch q.sent {
	case 1:
		return &remotecommand.TerminalSize{Width: 80, Height: 24}
	case 2:
		for !strings.Contains(q.out.String(), "24 80") {
			select {
			case <-q.ctx.Done():
				return nil
			case <-time.After(50 * time.Millisecond):
			}
		}
		return &remotecommand.TerminalSize{Width: 100, Height: 50}
	}
	<-q.ctx.Done()
	return nil
}

// TestStreamingExecV5StdinClose: v5's point is the CLOSE signal: a client's stdin EOF reaches
// the command (cat ends), which v4 cannot express.
func TestStreamingExecV5StdinClose(t *testing.T) {
	a := env.shared
	_, id := sleeper(t, a)
	for _, tr := range []transport{transports[0], transports[2]} {
		ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
		resp, err := a.rt.Exec(ctx, &runtimeapi.ExecRequest{ContainerId: id, Cmd: []string{"cat"}, Stdin: true, Stdout: true, Stderr: true})
		if err != nil {
			t.Fatal(err)
		}
		out, _, err := stream(ctx, tr, resp.Url, "to cat and back\n", false)
		cancel()
		if err != nil || out != "to cat and back\n" {
			t.Fatalf("exec cat over %s: %q, %v; want the input back and cat ended by stdin's end", tr.name, out, err)
		}
	}
}

// TestStreamingAttachV5StdinClose: the client's stdin EOF reaches a container created with
// stdin_once through an attach (its cat ends, and the container with it), over SPDY and v5.
func TestStreamingAttachV5StdinClose(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "attachclose"))
	for i, tr := range []transport{transports[0], transports[2]} {
		t.Run(tr.name, func(t *testing.T) {
			id := runContainer(t, a, p, ctrConfig(fmt.Sprintf("cat%d", i), env.images.busybox, withCommand("cat"), withStdin(true)))
			ctx, cancel := context.WithTimeout(ctxT(t), 30*time.Second)
			defer cancel()
			resp, err := a.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			out, _, err := stream(ctx, tr, resp.Url, "to cat and back\n", false)
			if err != nil || out != "to cat and back\n" {
				t.Fatalf("attach to cat over %s: %q, %v; want the input back and the session ended by stdin's end", tr.name, out, err)
			}
		})
	}
}

func TestStreamingAttachTransports(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "attachtr"))
	for i, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			// The container waits for a line and exits; the session ends with it, whatever the
			// transport can say about stdin.
			cfg := ctrConfig(fmt.Sprintf("reader%d", i), env.images.busybox, withShell("read l; echo got $l; echo oops >&2"), withStdin(false))
			id := runContainer(t, a, p, cfg)
			ctx := ctxT(t)
			resp, err := a.rt.Attach(ctx, &runtimeapi.AttachRequest{ContainerId: id, Stdin: true, Stdout: true, Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			out, errOut, err := stream(ctx, tr, resp.Url, "hello\n", false)
			if err != nil || out != "got hello\n" || errOut != "oops\n" {
				t.Fatalf("attach over %s: stdout %q stderr %q err %v", tr.name, out, errOut, err)
			}
		})
	}
}

func TestStreamingPortForwardTransports(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "pftr"))
	web := runContainer(t, a, p, ctrConfig("web", env.images.busybox,
		withShell("mkdir -p /www && echo hello-through-port-forward > /www/index.html && exec httpd -f -p 80 -h /www")))
	// client-go's forwarder gives up on its first refused connection: httpd must be up first.
	waitListening(t, a, web)
	dialers := []struct {
		name string
		dial func(u *url.URL) (httpstream.Dialer, error)
	}{
		{"spdy", func(u *url.URL) (httpstream.Dialer, error) {
			rt, up, err := spdy.RoundTripperFor(&rest.Config{})
			if err != nil {
				return nil, err
			}
			return spdy.NewDialer(up, &http.Client{Transport: rt}, http.MethodPost, u), nil
		}},
		{"websocket-tunnel", func(u *url.URL) (httpstream.Dialer, error) {
			return portforward.NewSPDYOverWebsocketDialer(u, &rest.Config{})
		}},
	}
	for _, d := range dialers {
		t.Run(d.name, func(t *testing.T) {
			dialer, err := d.dial(portForwardURL(t, a, p.id))
			if err != nil {
				t.Fatal(err)
			}
			local := clientForward(t, dialer)
			client := &http.Client{Timeout: 5 * time.Second}
			waitServed(t, client, local)
			for i := range 3 {
				// A new connection each time: every one is a new forwarded stream.
				if body, err := fetch(client, local); err != nil || body != "hello-through-port-forward\n" {
					t.Fatalf("request %d through %s port-forward = %q, %v", i, d.name, body, err)
				}
			}
		})
	}
	t.Run("websocket-v4", func(t *testing.T) {
		got := wsForward(t, portForwardURL(t, a, p.id).String(), "GET / HTTP/1.0\r\n\r\n")
		if !strings.Contains(got, "hello-through-port-forward") {
			t.Fatalf("GET through the v4 websocket port-forward = %q", got)
		}
	})
}

// clientForward forwards a local port to port 80 with client-go's port-forwarder, as
// kubectl does, and returns the URL of the local end.
func clientForward(t *testing.T, dialer httpstream.Dialer) string {
	t.Helper()
	stop, ready := make(chan struct{}), make(chan struct{})
	var out bytes.Buffer
	pf, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:80"}, stop, ready, &out, &out)
	if err != nil {
		t.Fatal(err)
	}
	// finished is closed, not sent on: the cleanup waits on it even after a failure below
	// has seen it.
	var fwdErr error
	finished := make(chan struct{})
	go func() { fwdErr = pf.ForwardPorts(); close(finished) }()
	t.Cleanup(func() { close(stop); <-finished })
	select {
	case <-ready:
	case <-finished:
		t.Fatalf("port-forward ended before it was ready: %v (%s)", fwdErr, out.String())
	case <-time.After(30 * time.Second):
		t.Fatal("port-forward not ready within 30s")
	}
	ports, err := pf.GetPorts()
	if err != nil || len(ports) != 1 {
		t.Fatalf("forwarded ports %v, %v", ports, err)
	}
	return fmt.Sprintf("http://127.0.0.1:%d/", ports[0].Local)
}

func portForwardURL(t *testing.T, a *agent, podID string) *url.URL {
	t.Helper()
	resp, err := a.rt.PortForward(ctxT(t), &runtimeapi.PortForwardRequest{PodSandboxId: podID, Port: []int32{80}})
	if err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(resp.Url)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// wsForward sends req to port 80 through the library's v4 WebSocket port-forward (channel 0
// data, channel 1 errors; each channel's first message is its port) and returns the reply.
func wsForward(t *testing.T, u, req string) string {
	t.Helper()
	cfg, err := websocket.NewConfig(strings.Replace(u, "http://", "ws://", 1), "http://127.0.0.1/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{"v4.channel.k8s.io"}
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("websocket dial %s: %v", u, err)
	}
	defer ws.Close()
	_ = ws.SetDeadline(time.Now().Add(30 * time.Second))
	if err := websocket.Message.Send(ws, append([]byte{0}, req...)); err != nil {
		t.Fatalf("websocket send: %v", err)
	}
	// Channel 0 carries the reply, channel 1 errors; the first message of each is its port.
	var data, errs bytes.Buffer
	announced := [2]bool{}
	for !strings.Contains(data.String(), "hello-through-port-forward") {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			t.Fatalf("websocket receive: %v (data %q, errors %q)", err, data.String(), errs.String())
		}
		if len(msg) == 0 || msg[0] > 1 {
			continue
		}
		ch := msg[0]
		if !announced[ch] {
			announced[ch] = true
			continue
		}
		[]*bytes.Buffer{&data, &errs}[ch].Write(msg[1:])
	}
	return data.String()
}

// waitListening waits until the container's httpd answers on port 80 inside the pod.
func waitListening(t *testing.T, a *agent, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"wget", "-q", "-O-", "http://127.0.0.1/"}, Timeout: 5})
		if err == nil && r.ExitCode == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("httpd in %s not answering: %v %v", id, r, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer written by one goroutine and read by another.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fetchWithin GETs url until the pod's httpd answers through the forward, for 20s.
func fetchWithin(t *testing.T, url string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	deadline := time.Now().Add(20 * time.Second)
	for {
		body, err := fetch(client, url)
		if (err == nil && body == "hello-through-port-forward\n") || time.Now().After(deadline) {
			return body, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitServed waits for the pod's httpd to answer through the forward (it may still be starting).
func waitServed(t *testing.T, client *http.Client, url string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		body, err := fetch(client, url)
		if err == nil && body == "hello-through-port-forward\n" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s through port-forward = %q, %v", url, body, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestStreamingCrictlWebSocket: crictl --transport websocket (client-go's v5 executor and
// SPDY-over-WebSocket port-forward) as a second client.
func TestStreamingCrictlWebSocket(t *testing.T) {
	needCrictl(t)
	a := env.shared
	_, id := sleeper(t, a)
	ctx := ctxT(t)
	cmd := crictlCmd(ctx, a, "exec", "--transport", "websocket", "-i", id, "cat")
	cmd.Stdin = strings.NewReader("over websocket\n")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "over websocket\n" {
		t.Fatalf("crictl exec --transport websocket -i cat = %q, %v", out, err)
	}

	p := runPod(t, a, podConfig(t, "crictlws"))
	rid := runContainer(t, a, p, ctrConfig("reader", env.images.busybox, withShell("read l; echo got $l"), withStdin(true)))
	cmd = crictlCmd(ctx, a, "attach", "--transport", "websocket", "-i", rid)
	cmd.Stdin = strings.NewReader("attached\n")
	if out, err := cmd.CombinedOutput(); err != nil || string(out) != "got attached\n" {
		t.Fatalf("crictl attach --transport websocket -i = %q, %v", out, err)
	}

	web := runContainer(t, a, p, ctrConfig("web", env.images.busybox,
		withShell("mkdir -p /www && echo hello-through-port-forward > /www/index.html && exec httpd -f -p 80 -h /www")))
	// client-go's forwarder gives up on its first failed connection: httpd must be up first.
	waitListening(t, a, web)
	pf := crictlCmd(ctx, a, "port-forward", "--transport", "websocket", p.id, ":80")
	var log syncBuffer
	local := forwardedPort(t, pf, &log)
	if body, err := fetchWithin(t, "http://127.0.0.1:"+local+"/"); err != nil || body != "hello-through-port-forward\n" {
		t.Fatalf("GET through crictl port-forward --transport websocket = %q, %v\ncrictl:\n%s", body, err, log.String())
	}
}

// forwardedPort starts a crictl port-forward and returns the local port it reports.
func forwardedPort(t *testing.T, cmd *osexec.Cmd, log io.Writer) string {
	t.Helper()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	port := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			fmt.Fprintln(log, sc.Text())
			if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
	}()
	select {
	case p := <-port:
		return p
	case <-time.After(30 * time.Second):
		t.Fatal("crictl port-forward did not report its local port within 30s")
		return ""
	}
}
