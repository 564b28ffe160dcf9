package server

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"strings"

	"golang.org/x/net/websocket"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// Port-forward over WebSocket is SPDY tunnelled through it: client-go's
// NewSPDYOverWebsocketDialer (kubectl port-forward since 1.31, crictl port-forward
// --transport websocket) asks for the subprotocol "SPDY/3.1+portforward.k8s.io" and, once
// upgraded, runs an ordinary SPDY client over the WebSocket's binary messages, which carry
// the byte stream in any slicing. It sends no HTTP upgrade inside the tunnel: the WebSocket
// handshake stands for it. The kubelet meets it with the API server's TunnelingHandler; we
// hand the WebSocket, as a net.Conn, to the library's SPDY port-forward server, which is
// then exactly the one a SPDY client gets.
const tunnelProtocol = portforward.WebsocketsSPDYTunnelingPortForwardV1

// serveTunnel upgrades req to a WebSocket with the tunnel subprotocol and serves SPDY
// port-forward for the sandbox over it, until the client closes it or ctx ends.
func (h *streamHandler) serveTunnel(w http.ResponseWriter, req *http.Request, sandboxID string) {
	srv := websocket.Server{
		Handshake: func(cfg *websocket.Config, _ *http.Request) error {
			// No Origin check: the client is the kubelet or crictl, not a browser, and the
			// URL's token is the credential.
			for _, p := range cfg.Protocol {
				if p == tunnelProtocol {
					cfg.Protocol = []string{p}
					return nil
				}
			}
			return fmt.Errorf("port-forward tunnel: no %s among %v", tunnelProtocol, cfg.Protocol)
		},
		Handler: func(ws *websocket.Conn) {
			ws.PayloadType = websocket.BinaryFrame
			h.serveSPDYOver(ws, req, sandboxID)
		},
	}
	srv.ServeHTTP(w, req)
}

// serveSPDYOver runs the library's SPDY port-forward on conn, presenting it with the upgrade
// request a SPDY client would have sent and a response writer whose status and headers go
// nowhere (the WebSocket handshake has answered) and whose Hijack yields conn.
func (h *streamHandler) serveSPDYOver(conn net.Conn, req *http.Request, sandboxID string) {
	spdyReq := req.Clone(req.Context())
	spdyReq.Header = http.Header{}
	spdyReq.Header.Set("Connection", "Upgrade")
	spdyReq.Header.Set("Upgrade", "SPDY/3.1")
	spdyReq.Header.Set("X-Stream-Protocol-Version", portforward.ProtocolV1Name)
	tw := &tunnelWriter{conn: conn, header: http.Header{}}
	portforward.ServePortForward(tw, spdyReq, libRuntime{h.rt}, sandboxID, "", &portforward.V4Options{},
		h.idle, h.creation, portforward.SupportedProtocols)
	if tw.status != http.StatusSwitchingProtocols {
		h.log.Warn("port-forward tunnel: SPDY upgrade refused", "status", tw.status, "answer", strings.TrimSpace(tw.body.String()))
	}
}

// tunnelWriter is the http.ResponseWriter the library's SPDY upgrade writes to inside a
// tunnel. A refused upgrade's answer is kept for the log.
type tunnelWriter struct {
	conn   net.Conn
	header http.Header
	status int
	body   strings.Builder
}

func (t *tunnelWriter) Header() http.Header { return t.header }

func (t *tunnelWriter) WriteHeader(code int) {
	if t.status == 0 {
		t.status = code
	}
}

func (t *tunnelWriter) Write(p []byte) (int, error) {
	t.WriteHeader(http.StatusOK)
	return t.body.Write(p)
}

func (t *tunnelWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}
