package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/net/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/spdy"
	utilexec "k8s.io/utils/exec"
)

// fakeSessions is a sessionRuntime whose exec and attach run session and whose
// port-forward runs forward.
type fakeSessions struct {
	session func(ctx context.Context, st v5Streams) error
	forward func(port int32, stream io.ReadWriteCloser) error
}

func (f fakeSessions) Exec(ctx context.Context, _ string, _ []string, in io.Reader, out, errOut io.WriteCloser, _ bool, resize <-chan remotecommand.TerminalSize) error {
	return f.session(ctx, v5Streams{in: in, out: out, errOut: errOut, resize: resize})
}

func (f fakeSessions) Attach(ctx context.Context, _ string, in io.Reader, out, errOut io.WriteCloser, _ bool, resize <-chan remotecommand.TerminalSize) error {
	return f.session(ctx, v5Streams{in: in, out: out, errOut: errOut, resize: resize})
}

func (f fakeSessions) PortForward(_ context.Context, _ string, port int32, stream io.ReadWriteCloser) error {
	return f.forward(port, stream)
}

func newTestHandler(t *testing.T, rt sessionRuntime) *streamHandler {
	t.Helper()
	h := &streamHandler{rt: rt, tokens: newTokenCache(), idle: time.Minute, creation: 10 * time.Second, log: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	base, err := url.Parse(srv.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	h.base = base
	return h
}

// dialWS opens a WebSocket to a streaming URL offering protocols.
func dialWS(t *testing.T, rawURL string, protocols ...string) *websocket.Conn {
	t.Helper()
	cfg, err := websocket.NewConfig(strings.Replace(rawURL, "http://", "ws://", 1), "http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = protocols
	ws, err := websocket.DialConfig(cfg)
	if err != nil {
		t.Fatalf("websocket dial %s %v: %v", rawURL, protocols, err)
	}
	t.Cleanup(func() { ws.Close() })
	_ = ws.SetDeadline(time.Now().Add(30 * time.Second))
	return ws
}

func send(t *testing.T, ws *websocket.Conn, msg ...byte) {
	t.Helper()
	if err := websocket.Message.Send(ws, msg); err != nil {
		t.Fatalf("send %v: %v", msg, err)
	}
}

// readSession reads the server's messages until it closes the connection and returns what
// each channel carried (the first, empty, message included as nothing).
func readSession(t *testing.T, ws *websocket.Conn) map[byte]string {
	t.Helper()
	got := map[byte]string{}
	for {
		var msg []byte
		if err := websocket.Message.Receive(ws, &msg); err != nil {
			if errors.Is(err, io.EOF) {
				return got
			}
			t.Fatalf("receive: %v (so far %q)", err, got)
		}
		if len(msg) == 0 {
			t.Fatal("a message without a channel byte")
		}
		got[msg[0]] += string(msg[1:])
	}
}

func decodeStatus(t *testing.T, s string) streamStatus {
	t.Helper()
	var st streamStatus
	if err := json.Unmarshal([]byte(s), &st); err != nil {
		t.Fatalf("status %q: %v", s, err)
	}
	return st
}

func TestStreamV5CloseSignalEndsStdin(t *testing.T) {
	// cat: stdin to stdout until stdin's EOF, which only the close signal can bring.
	h := newTestHandler(t, fakeSessions{session: func(_ context.Context, st v5Streams) error {
		_, err := io.Copy(st.out, st.in)
		return err
	}})
	u, err := h.issue(kindExec, &runtimeapi.ExecRequest{ContainerId: "c", Cmd: []string{"cat"}, Stdin: true, Stdout: true})
	if err != nil {
		t.Fatal(err)
	}
	ws := dialWS(t, u, protocolV5)
	if got := ws.Config().Protocol; len(got) != 1 || got[0] != protocolV5 {
		t.Fatalf("negotiated %v, want %s", got, protocolV5)
	}
	send(t, ws, append([]byte{chanStdin}, "to cat "...)...)
	send(t, ws, append([]byte{chanStdin}, "and back"...)...)
	send(t, ws, 255, chanStdin)
	got := readSession(t, ws)
	if got[chanStdout] != "to cat and back" {
		t.Fatalf("stdout %q, want the input back", got[chanStdout])
	}
	if st := decodeStatus(t, got[chanError]); st.Status != "Success" {
		t.Fatalf("status %+v, want Success", st)
	}
}

func TestStreamV5Status(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantReason string
		wantCause  string
	}{
		{name: "success", wantReason: ""},
		{name: "exit code", err: utilexec.CodeExitError{Err: errors.New("exited"), Code: 3}, wantReason: remotecommand.NonZeroExitCodeReason, wantCause: "3"},
		{name: "wrapped exit code", err: fmt.Errorf("exec: %w", utilexec.CodeExitError{Err: errors.New("exited"), Code: 137}), wantReason: remotecommand.NonZeroExitCodeReason, wantCause: "137"},
		{name: "runtime failure", err: errors.New("shim gone"), wantReason: "InternalError"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newTestHandler(t, fakeSessions{session: func(_ context.Context, st v5Streams) error {
				fmt.Fprint(st.errOut, "oops")
				return tt.err
			}})
			u, err := h.issue(kindAttach, &runtimeapi.AttachRequest{ContainerId: "c", Stderr: true})
			if err != nil {
				t.Fatal(err)
			}
			got := readSession(t, dialWS(t, u, protocolV5))
			if got[chanStderr] != "oops" {
				t.Fatalf("stderr %q", got[chanStderr])
			}
			st := decodeStatus(t, got[chanError])
			if st.Reason != tt.wantReason || (tt.err == nil) != (st.Status == "Success") {
				t.Fatalf("status %+v, want reason %q", st, tt.wantReason)
			}
			if tt.wantCause != "" && (st.Details == nil || len(st.Details.Causes) != 1 ||
				st.Details.Causes[0].Type != remotecommand.ExitCodeCauseType || st.Details.Causes[0].Message != tt.wantCause) {
				t.Fatalf("status %+v, want exit code cause %s", st, tt.wantCause)
			}
		})
	}
}

func TestStreamV5StreamsAsRequested(t *testing.T) {
	type seen struct{ in, out, errOut, resize bool }
	got := make(chan seen, 1)
	h := newTestHandler(t, fakeSessions{session: func(_ context.Context, st v5Streams) error {
		got <- seen{st.in != nil, st.out != nil, st.errOut != nil, st.resize != nil}
		return nil
	}})
	tests := []struct {
		req  *runtimeapi.ExecRequest
		want seen
	}{
		{&runtimeapi.ExecRequest{Stdout: true}, seen{out: true}},
		{&runtimeapi.ExecRequest{Stdin: true, Stderr: true}, seen{in: true, errOut: true}},
		{&runtimeapi.ExecRequest{Stdin: true, Stdout: true, Tty: true}, seen{in: true, out: true, resize: true}},
	}
	for _, tt := range tests {
		u, err := h.issue(kindExec, tt.req)
		if err != nil {
			t.Fatal(err)
		}
		readSession(t, dialWS(t, u, protocolV5))
		if g := <-got; g != tt.want {
			t.Fatalf("request %v: session got streams %+v, want %+v", tt.req, g, tt.want)
		}
	}
}

func TestStreamV5Resize(t *testing.T) {
	h := newTestHandler(t, fakeSessions{session: func(ctx context.Context, st v5Streams) error {
		for range 2 {
			select {
			case sz := <-st.resize:
				fmt.Fprintf(st.out, "%dx%d;", sz.Width, sz.Height)
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		return nil
	}})
	u, err := h.issue(kindExec, &runtimeapi.ExecRequest{Cmd: []string{"sh"}, Stdout: true, Tty: true})
	if err != nil {
		t.Fatal(err)
	}
	ws := dialWS(t, u, protocolV5)
	send(t, ws, append([]byte{chanResize}, `{"Width":80,"Height":24}`...)...)
	send(t, ws, append([]byte{chanResize}, `{"Width":100,"Height":50}`...)...)
	if got := readSession(t, ws); got[chanStdout] != "80x24;100x50;" {
		t.Fatalf("session saw sizes %q", got[chanStdout])
	}
}

func TestStreamHandlerRoutes(t *testing.T) {
	h := newTestHandler(t, fakeSessions{session: func(context.Context, v5Streams) error { return nil }})
	exec := func() string {
		u, err := h.issue(kindExec, &runtimeapi.ExecRequest{Stdout: true})
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	// Both a v4 and a v5 offer: v5 wins, the only one that can say stdin ended.
	u := exec()
	if got := dialWS(t, u, "v4.channel.k8s.io", protocolV5).Config().Protocol; len(got) != 1 || got[0] != protocolV5 {
		t.Fatalf("v4+v5 offer negotiated %v", got)
	}
	// A v4 offer is the library's: its v4 server answers.
	if got := dialWS(t, exec(), "v4.channel.k8s.io").Config().Protocol; len(got) != 1 || got[0] != "v4.channel.k8s.io" {
		t.Fatalf("v4 offer negotiated %v", got)
	}
	wrongKind := strings.Replace(exec(), "/exec/", "/attach/", 1)
	expired := exec()
	h.tokens.now = func() time.Time { return time.Now().Add(2 * tokenTTL) }
	for _, tt := range []struct {
		name, method, url string
		want              int
	}{
		{"used token", http.MethodPost, u, http.StatusNotFound},
		{"token of another kind", http.MethodPost, wrongKind, http.StatusNotFound},
		{"expired token", http.MethodPost, expired, http.StatusNotFound},
		{"no token", http.MethodPost, h.base.JoinPath("exec").String(), http.StatusNotFound},
		{"method", http.MethodPut, exec(), http.StatusMethodNotAllowed},
	} {
		req, err := http.NewRequest(tt.method, tt.url, nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tt.want {
			t.Errorf("%s: status %d, want %d", tt.name, resp.StatusCode, tt.want)
		}
	}
}

func TestStreamTunnelPortForward(t *testing.T) {
	h := newTestHandler(t, fakeSessions{forward: func(port int32, stream io.ReadWriteCloser) error {
		line, err := bufio.NewReader(stream).ReadString('\n')
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(stream, "port %d got %s", port, line)
		return err
	}})
	u, err := h.issue(kindPortForward, &runtimeapi.PortForwardRequest{PodSandboxId: "p", Port: []int32{80}})
	if err != nil {
		t.Fatal(err)
	}
	ws := dialWS(t, u, tunnelProtocol)
	if got := ws.Config().Protocol; len(got) != 1 || got[0] != tunnelProtocol {
		t.Fatalf("negotiated %v, want %s", got, tunnelProtocol)
	}
	// The client side of the tunnel, as client-go's: binary messages carrying SPDY.
	ws.PayloadType = websocket.BinaryFrame
	conn, err := spdy.NewClientConnection(ws)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for i := range 2 {
		// Each forwarded connection is an error stream and a data stream of one request id.
		hdr := http.Header{}
		hdr.Set("port", "8080")
		hdr.Set("requestID", fmt.Sprint(i))
		hdr.Set("streamType", "error")
		errStream, err := conn.CreateStream(hdr)
		if err != nil {
			t.Fatal(err)
		}
		errStream.Close()
		hdr.Set("streamType", "data")
		data, err := conn.CreateStream(hdr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(data, "hello %d\n", i)
		reply, err := io.ReadAll(data)
		if want := fmt.Sprintf("port 8080 got hello %d\n", i); err != nil || string(reply) != want {
			t.Fatalf("connection %d through the tunnel: %q, %v; want %q", i, reply, err, want)
		}
	}
}

func TestTunnelRefusesOtherProtocols(t *testing.T) {
	h := newTestHandler(t, fakeSessions{})
	u, err := h.issue(kindPortForward, &runtimeapi.PortForwardRequest{PodSandboxId: "p"})
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := websocket.NewConfig(strings.Replace(u, "http://", "ws://", 1), "http://localhost/")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Protocol = []string{"SPDY/3.1+other.k8s.io"}
	if ws, err := websocket.DialConfig(cfg); err == nil {
		ws.Close()
		t.Fatal("a tunnel for another protocol was accepted")
	}
}

func TestTokenCache(t *testing.T) {
	now := time.Unix(1000, 0)
	c := newTokenCache()
	c.now = func() time.Time { return now }
	req := &runtimeapi.ExecRequest{ContainerId: "c"}
	tok, err := c.insert(req)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := c.consume(tok); !ok || got != req {
		t.Fatalf("consume = %v, %v", got, ok)
	}
	if _, ok := c.consume(tok); ok {
		t.Fatal("a token was served twice")
	}
	old, _ := c.insert(req)
	now = now.Add(tokenTTL + time.Second)
	if _, ok := c.consume(old); ok {
		t.Fatal("an expired token was served")
	}
	// The cap counts live tokens only: expired ones make room.
	for i := range maxTokens {
		if _, err := c.insert(req); err != nil {
			t.Fatalf("insert %d: %v", i, err)
		}
	}
	if _, err := c.insert(req); !errdefs.IsResourceExhausted(err) {
		t.Fatalf("insert past the cap = %v, want ResourceExhausted", err)
	}
	now = now.Add(tokenTTL + time.Second)
	if _, err := c.insert(req); err != nil {
		t.Fatalf("insert after the others expired: %v", err)
	}
}

func TestCheckStreams(t *testing.T) {
	for _, tt := range []struct {
		name                       string
		stdin, stdout, stderr, tty bool
		wantErr                    bool
	}{
		{name: "stdout", stdout: true},
		{name: "tty with stdin and stdout", stdin: true, stdout: true, tty: true},
		{name: "none", wantErr: true},
		{name: "tty with stderr", stdout: true, stderr: true, tty: true, wantErr: true},
	} {
		err := checkStreams(tt.stdin, tt.stdout, tt.stderr, tt.tty)
		if tt.wantErr != (err != nil) || (err != nil && !errdefs.IsInvalidArgument(err)) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}
