package server

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
)

// The URL kinds, the first element of a streaming URL's path.
const (
	kindExec        = "exec"
	kindAttach      = "attach"
	kindPortForward = "portforward"
)

// streamHandler serves the URLs that Exec, Attach and PortForward issue. The protocols that
// k8s.io/cri-streaming implements (SPDY, WebSocket v1-v4) go to its handlers; the two it
// lacks, which crictl --transport websocket and client-go's WebSocket clients speak, are
// served here natively: exec and attach over WebSocket v5.channel.k8s.io
// (streaming_v5.go), and port-forward's SPDY tunnelled through a WebSocket
// (streaming_tunnel.go). Each request is looked up once, by its token, whatever the
// transport: a URL is single use across all of them.
type streamHandler struct {
	rt             sessionRuntime
	tokens         *tokenCache
	base           *url.URL
	idle, creation time.Duration
	log            *slog.Logger
}

func (h *streamHandler) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet && req.Method != http.MethodPost {
		w.Header().Set("Allow", "GET, POST")
		http.Error(w, "streaming: method not allowed", http.StatusMethodNotAllowed)
		return
	}
	kind, token, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/")
	if !ok || token == "" || strings.Contains(token, "/") {
		http.NotFound(w, req)
		return
	}
	r, ok := h.tokens.consume(token)
	if !ok {
		http.NotFound(w, req)
		return
	}
	switch r := r.(type) {
	case *runtimeapi.ExecRequest:
		if kind == kindExec {
			h.serveExec(w, req, r)
			return
		}
	case *runtimeapi.AttachRequest:
		if kind == kindAttach {
			h.serveAttach(w, req, r)
			return
		}
	case *runtimeapi.PortForwardRequest:
		if kind == kindPortForward {
			h.servePortForward(w, req, r)
			return
		}
	}
	http.NotFound(w, req)
}

func (h *streamHandler) serveExec(w http.ResponseWriter, req *http.Request, r *runtimeapi.ExecRequest) {
	opts := remotecommand.Options{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, TTY: r.Tty}
	if offersProtocol(req, protocolV5) {
		h.serveV5(w, req, opts, func(ctx context.Context, st v5Streams) error {
			return h.rt.Exec(ctx, r.ContainerId, r.Cmd, st.in, st.out, st.errOut, r.Tty, st.resize)
		})
		return
	}
	remotecommand.ServeExec(w, req, libRuntime{h.rt}, "", "", r.ContainerId, r.Cmd, &opts,
		h.idle, h.creation, remotecommand.SupportedStreamingProtocols)
}

func (h *streamHandler) serveAttach(w http.ResponseWriter, req *http.Request, r *runtimeapi.AttachRequest) {
	opts := remotecommand.Options{Stdin: r.Stdin, Stdout: r.Stdout, Stderr: r.Stderr, TTY: r.Tty}
	if offersProtocol(req, protocolV5) {
		h.serveV5(w, req, opts, func(ctx context.Context, st v5Streams) error {
			return h.rt.Attach(ctx, r.ContainerId, st.in, st.out, st.errOut, r.Tty, st.resize)
		})
		return
	}
	remotecommand.ServeAttach(w, req, libRuntime{h.rt}, "", "", r.ContainerId, &opts,
		h.idle, h.creation, remotecommand.SupportedStreamingProtocols)
}

func (h *streamHandler) servePortForward(w http.ResponseWriter, req *http.Request, r *runtimeapi.PortForwardRequest) {
	if offersProtocol(req, tunnelProtocol) {
		h.serveTunnel(w, req, r.PodSandboxId)
		return
	}
	// The ports only matter to a WebSocket v4 client (one channel pair per port); a SPDY
	// client names the port in each stream's headers.
	opts, err := portforward.BuildV4Options(r.Port)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	portforward.ServePortForward(w, req, libRuntime{h.rt}, r.PodSandboxId, "", opts,
		h.idle, h.creation, portforward.SupportedProtocols)
}

// offersProtocol reports whether req is a WebSocket upgrade that offers protocol among its
// subprotocols (one header or several, each a comma-separated list).
func offersProtocol(req *http.Request, protocol string) bool {
	if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range req.Header.Values("Sec-WebSocket-Protocol") {
		for p := range strings.SplitSeq(v, ",") {
			if strings.TrimSpace(p) == protocol {
				return true
			}
		}
	}
	return false
}

// issue records req and returns the URL its client connects to.
func (h *streamHandler) issue(kind string, req any) (string, error) {
	token, err := h.tokens.insert(req)
	if err != nil {
		return "", err
	}
	return h.base.JoinPath(kind, token).String(), nil
}

// checkStreams is the CRI's rule for exec and attach: at least one stream, and no stderr
// with a tty (a terminal has one output).
func checkStreams(stdin, stdout, stderr, tty bool) error {
	if tty && stderr {
		return fmt.Errorf("tty and stderr cannot both be requested: %w", errdefs.ErrInvalidArgument)
	}
	if !stdin && !stdout && !stderr {
		return fmt.Errorf("one of stdin, stdout and stderr must be requested: %w", errdefs.ErrInvalidArgument)
	}
	return nil
}

// sessionRuntime runs the sessions behind the URLs: streamRuntime (streaming_runtime.go), a
// fake in tests. A session ends when ctx does: the client left or the server stopped.
type sessionRuntime interface {
	Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
	Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error
	PortForward(ctx context.Context, sandboxID string, port int32, stream io.ReadWriteCloser) error
}

// libRuntime adapts a sessionRuntime to the interfaces of k8s.io/cri-streaming's protocol
// handlers, whose pod name argument carries the sandbox id.
type libRuntime struct{ rt sessionRuntime }

func (a libRuntime) ExecInContainer(ctx context.Context, _, _, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize, _ time.Duration) error {
	return a.rt.Exec(ctx, id, cmd, in, out, errOut, tty, resize)
}

func (a libRuntime) AttachContainer(ctx context.Context, _, _, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	return a.rt.Attach(ctx, id, in, out, errOut, tty, resize)
}

func (a libRuntime) PortForward(ctx context.Context, sandboxID, _ string, port int32, stream io.ReadWriteCloser) error {
	return a.rt.PortForward(ctx, sandboxID, port, stream)
}
