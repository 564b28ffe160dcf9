package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"
)

// WebSocket v5.channel.k8s.io is v4 plus one signal: a binary message [255, n] from the
// client closes its channel n; for stdin (n = 0) the session's reader sees EOF, which is how
// `kubectl exec -i ... cat` or `crictl exec --transport websocket -i` ends when its input
// does. Every other message is a channel byte and the channel's data: 0 stdin, 1 stdout,
// 2 stderr, 3 the exit status (a metav1.Status in JSON, written once at the end), 4 terminal
// sizes (JSON {"Width","Height"}, one after another).
//
// The framing is k8s.io/streaming's wsstream.Conn (already linked for the library's v1-v4,
// over golang.org/x/net/websocket), which implements the close signal for this subprotocol;
// the session around it is ours.
const protocolV5 = "v5.channel.k8s.io"

// The v4/v5 channels.
const (
	chanStdin = iota
	chanStdout
	chanStderr
	chanError
	chanResize
	numChannels
)

// v5Streams are a session's ends of the WebSocket; a stream the request did not ask for is
// nil, and resize is nil without a tty.
type v5Streams struct {
	in          io.Reader
	out, errOut io.WriteCloser
	resize      <-chan remotecommand.TerminalSize
}

// v5Session runs an exec or attach on the streams, until it ends or ctx does.
type v5Session func(ctx context.Context, st v5Streams) error

// serveV5 upgrades req to a v5 WebSocket, runs the session and writes its exit status.
func (h *streamHandler) serveV5(w http.ResponseWriter, req *http.Request, opts remotecommand.Options, run v5Session) {
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{
		protocolV5: {Binary: true, Channels: v5Channels(opts)},
	})
	conn.SetIdleTimeout(h.idle)
	_, chans, err := conn.Open(w, req)
	if err != nil {
		// The handshake has answered the client (403 for an offer without v5).
		h.log.Debug("websocket v5 upgrade failed", "path", req.URL.Path, "err", err)
		return
	}
	defer conn.Close()
	// An empty message on the first output channel tells the client its streams are up, as
	// the library's v4 server does.
	if _, err := chans[firstOutput(opts)].Write(nil); err != nil {
		return
	}
	st := v5Streams{}
	if opts.Stdin {
		st.in = chans[chanStdin]
	}
	if opts.Stdout {
		st.out = chans[chanStdout]
	}
	if opts.Stderr {
		st.errOut = chans[chanStderr]
	}
	if opts.TTY {
		sizes := make(chan remotecommand.TerminalSize)
		st.resize = sizes
		go decodeSizes(req.Context(), chans[chanResize], sizes)
	}
	runErr := run(req.Context(), st)
	if runErr != nil && !isExit(runErr) {
		h.log.Warn("websocket session failed", "path", req.URL.Path, "err", runErr)
	}
	if err := writeStatus(chans[chanError], runErr); err != nil {
		h.log.Debug("websocket v5: write exit status", "err", err)
	}
}

// v5Channels: stdin and the resize channel are read, the outputs written; a stream the
// request did not ask for is ignored (its reads see EOF, its writes go nowhere).
func v5Channels(opts remotecommand.Options) []wsstream.ChannelType {
	pick := func(want bool, t wsstream.ChannelType) wsstream.ChannelType {
		if want {
			return t
		}
		return wsstream.IgnoreChannel
	}
	ch := make([]wsstream.ChannelType, numChannels)
	ch[chanStdin] = pick(opts.Stdin, wsstream.ReadChannel)
	ch[chanStdout] = pick(opts.Stdout, wsstream.WriteChannel)
	ch[chanStderr] = pick(opts.Stderr, wsstream.WriteChannel)
	ch[chanError] = wsstream.WriteChannel
	ch[chanResize] = pick(opts.TTY, wsstream.ReadChannel)
	return ch
}

func firstOutput(opts remotecommand.Options) int {
	switch {
	case opts.Stdout:
		return chanStdout
	case opts.Stderr:
		return chanStderr
	}
	return chanError
}

// decodeSizes relays the client's terminal sizes until its channel or ctx ends.
func decodeSizes(ctx context.Context, r io.Reader, out chan<- remotecommand.TerminalSize) {
	defer close(out)
	dec := json.NewDecoder(r)
	for {
		var sz remotecommand.TerminalSize
		if err := dec.Decode(&sz); err != nil {
			return
		}
		select {
		case out <- sz:
		case <-ctx.Done():
			return
		}
	}
}

// streamStatus is the subset of metav1.Status that client-go's v4/v5 decoder reads.
type streamStatus struct {
	Metadata struct{}       `json:"metadata"`
	Status   string         `json:"status"`
	Message  string         `json:"message,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Details  *statusDetails `json:"details,omitempty"`
	Code     int32          `json:"code,omitempty"`
}

type statusDetails struct {
	Causes []statusCause `json:"causes"`
}

type statusCause struct {
	Type    string `json:"reason"`
	Message string `json:"message"`
}

// exitStatus is the status a session's result is reported as: Success; NonZeroExitCode with
// an ExitCode cause (client-go turns it into exec.CodeExitError, kubectl and crictl exit
// with it); or an internal error.
func exitStatus(err error) streamStatus {
	var exit utilexec.ExitError
	switch {
	case err == nil:
		return streamStatus{Status: "Success"}
	case errors.As(err, &exit) && exit.Exited():
		return streamStatus{
			Status:  "Failure",
			Reason:  remotecommand.NonZeroExitCodeReason,
			Message: fmt.Sprintf("command terminated with non-zero exit code: %v", err),
			Details: &statusDetails{Causes: []statusCause{{Type: remotecommand.ExitCodeCauseType, Message: strconv.Itoa(exit.ExitStatus())}}},
		}
	}
	return streamStatus{
		Status:  "Failure",
		Reason:  "InternalError",
		Message: fmt.Sprintf("Internal error occurred: %v", err),
		Code:    http.StatusInternalServerError,
	}
}

func isExit(err error) bool {
	var exit utilexec.ExitError
	return errors.As(err, &exit) && exit.Exited()
}

func writeStatus(w io.Writer, err error) error {
	b, mErr := json.Marshal(exitStatus(err))
	if mErr != nil {
		return mErr
	}
	_, wErr := w.Write(b)
	return wErr
}
