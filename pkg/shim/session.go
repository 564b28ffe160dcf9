package shim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/status"

	"github.com/berth-runtime/berth/pkg/shim/api"
)

// Exec and attach byte streams do not ride on ttrpc (its messages are
// capped at 4 MiB and it has no half-close): each stream is a plain unix
// connection to <dir>/io.sock, which keeps EOF, back-pressure and
// disconnects as the kernel reports them.
//
// A session goes:
//
//	OpenSession RPC -> token (process not started yet)
//	client dials io.sock once per stream, sending "<token> <stream>\n",
//	  and reads "ok\n" (or "error <text>\n"); streams are ctl, stdin,
//	  stdout, stderr (no stderr with a tty)
//	all requested streams connected -> the backend starts the exec / attach
//	stdin: client data, client CloseWrite = EOF for the process
//	ctl client->shim: JSON TermSize lines (resize)
//	process exits, output drained -> shim closes stdout/stderr, then writes
//	  one JSON sessionEnd line on ctl and closes it
//	ctl EOF or error before that = the client went away: the exec'd process
//	  tree is killed (an attach just detaches) and the session ends
//
// A session whose streams do not all connect within sessionConnectTimeout
// is dropped without starting anything.

// Stream names in the io.sock handshake.
const (
	streamCtl    = "ctl"
	streamStdin  = "stdin"
	streamStdout = "stdout"
	streamStderr = "stderr"
)

// Session kinds of SessionRequest.Kind.
const (
	sessionExec   = "exec"
	sessionAttach = "attach"
)

const (
	sessionConnectTimeout = 10 * time.Second
	handshakeTimeout      = 5 * time.Second
	// outputWriteTimeout drops a client that stops reading, so it cannot
	// stall the container's log (attach) or its own process for ever.
	outputWriteTimeout = time.Minute
)

// sessionEnd is the last line the shim writes on ctl.
type sessionEnd struct {
	ExitCode int32  `json:"exitCode"`
	TimedOut bool   `json:"timedOut,omitempty"`
	Code     uint32 `json:"code,omitempty"` // gRPC code of the error; 0 = none
	Message  string `json:"message,omitempty"`
}

type session struct {
	token string
	req   *api.SessionRequest
	want  map[string]bool
	conns map[string]net.Conn
	ready chan struct{} // closed when every wanted stream is connected
}

type sessionTable struct {
	mu sync.Mutex
	m  map[string]*session
}

func (t *sessionTable) len() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// remove forgets a session and closes its connections; it reports whether
// the session was still there.
func (t *sessionTable) remove(ss *session) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m[ss.token] != ss {
		return false
	}
	delete(t.m, ss.token)
	for _, c := range ss.conns {
		c.Close()
	}
	return true
}

// connect binds a connection to a session's stream.
func (t *sessionTable) connect(token, stream string, conn net.Conn) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	ss, ok := t.m[token]
	if !ok {
		return fmt.Errorf("session: %w", errdefs.ErrNotFound)
	}
	if !ss.want[stream] {
		return fmt.Errorf("stream %q not requested: %w", stream, errdefs.ErrInvalidArgument)
	}
	if _, dup := ss.conns[stream]; dup {
		return fmt.Errorf("stream %q already connected: %w", stream, errdefs.ErrAlreadyExists)
	}
	ss.conns[stream] = conn
	if len(ss.conns) == len(ss.want) {
		close(ss.ready)
	}
	return nil
}

// ListenIO creates dir/io.sock (mode 0600) for session streams; a stale
// socket is replaced.
func ListenIO(dir string) (net.Listener, error) {
	sock := filepath.Join(dir, IOSocketName)
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", sock, err)
	}
	return l, nil
}

// ServeIO accepts session streams on l until ctx is done; ending ctx also
// ends every running session.
func (s *Server) ServeIO(ctx context.Context, l net.Listener) error {
	s.sessions.mu.Lock()
	s.ioCtx = ctx
	s.sessions.mu.Unlock()
	go func() {
		<-ctx.Done()
		l.Close()
	}()
	for {
		conn, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go s.handshake(conn)
	}
}

// handshake reads "<token> <stream>\n" and binds conn to its session.
func (s *Server) handshake(conn net.Conn) {
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	line, err := readLine(conn)
	var token, stream string
	if err == nil {
		if _, serr := fmt.Sscanf(line, "%s %s", &token, &stream); serr != nil {
			err = fmt.Errorf("bad handshake %q: %w", line, errdefs.ErrInvalidArgument)
		}
	}
	if err == nil {
		err = s.sessions.connect(token, stream, conn)
	}
	if err != nil {
		_, _ = fmt.Fprintf(conn, "error %s\n", err)
		conn.Close()
		return
	}
	_ = conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "ok\n"); err != nil {
		s.log.Debug("session handshake reply", "err", err)
	}
}

// readLine reads up to '\n' one byte at a time, so that nothing after the
// line is consumed from the stream.
func readLine(r io.Reader) (string, error) {
	var buf []byte
	b := make([]byte, 1)
	for len(buf) < 256 {
		if _, err := io.ReadFull(r, b); err != nil {
			return "", err
		}
		if b[0] == '\n' {
			return string(buf), nil
		}
		buf = append(buf, b[0])
	}
	return "", fmt.Errorf("handshake line too long: %w", errdefs.ErrInvalidArgument)
}

// openSession validates a request and registers the session.
func (s *Server) openSession(r *api.SessionRequest) (string, error) {
	st, err := s.backend.State(r.Id)
	if err != nil {
		return "", err
	}
	switch r.Kind {
	case sessionExec:
		if len(r.Args) == 0 {
			return "", fmt.Errorf("exec in %q: no command: %w", r.Id, errdefs.ErrInvalidArgument)
		}
		if st.Status != StatusRunning {
			return "", fmt.Errorf("exec in %q: container is %s: %w", r.Id, st.Status, errdefs.ErrFailedPrecondition)
		}
	case sessionAttach:
		if st.Status != StatusRunning && st.Status != StatusCreated {
			return "", fmt.Errorf("attach to %q: container is %s: %w", r.Id, st.Status, errdefs.ErrFailedPrecondition)
		}
	default:
		return "", fmt.Errorf("session kind %q: %w", r.Kind, errdefs.ErrInvalidArgument)
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	ss := &session{
		token: hex.EncodeToString(raw[:]),
		req:   r,
		want:  map[string]bool{streamCtl: true},
		conns: map[string]net.Conn{},
		ready: make(chan struct{}),
	}
	for name, on := range map[string]bool{streamStdin: r.Stdin, streamStdout: r.Stdout, streamStderr: r.Stderr && !r.Tty} {
		if on {
			ss.want[name] = true
		}
	}
	s.sessions.mu.Lock()
	s.sessions.m[ss.token] = ss
	s.sessions.mu.Unlock()
	go s.awaitStreams(ss)
	return ss.token, nil
}

func (s *Server) awaitStreams(ss *session) {
	t := time.NewTimer(sessionConnectTimeout)
	defer t.Stop()
	select {
	case <-ss.ready:
		s.runSession(ss)
	case <-t.C:
		if s.sessions.remove(ss) {
			s.log.Warn("session streams did not connect; dropped", "container", ss.req.Id, "kind", ss.req.Kind)
		}
	}
}

// runSession drives the backend with the connected streams and ends the
// session: every goroutine started here returns before it does, except
// the backend's stdin copy, which ends when remove closes its connection.
func (s *Server) runSession(ss *session) {
	s.sessions.mu.Lock()
	parent := s.ioCtx
	s.sessions.mu.Unlock()
	if parent == nil {
		parent = context.Background()
	}
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	ctl := ss.conns[streamCtl]
	resize := make(chan TermSize)
	ctlDone := make(chan struct{})
	go func() {
		defer close(ctlDone)
		defer cancel() // ctl EOF before the end line: the client went away
		dec := json.NewDecoder(ctl)
		for {
			var sz TermSize
			if err := dec.Decode(&sz); err != nil {
				return
			}
			select {
			case resize <- sz:
			case <-ctx.Done():
				return
			}
		}
	}()
	streams := Streams{Resize: resize}
	if c, ok := ss.conns[streamStdin]; ok {
		streams.Stdin = c
	}
	if c, ok := ss.conns[streamStdout]; ok {
		streams.Stdout = deadlineWriter{c}
	}
	if c, ok := ss.conns[streamStderr]; ok {
		streams.Stderr = deadlineWriter{c}
	}
	var end sessionEnd
	var err error
	r := ss.req
	if r.Kind == sessionExec {
		var res ExecResult
		res, err = s.backend.Exec(ctx, r.Id, ExecOptions{
			Cmd: r.Args, Tty: r.Tty, Size: TermSize{Width: uint16(r.Width), Height: uint16(r.Height)},
			Timeout: time.Duration(r.TimeoutNs), Streams: streams,
		})
		end.ExitCode, end.TimedOut = res.ExitCode, res.TimedOut
	} else {
		err = s.backend.Attach(ctx, r.Id, streams)
	}
	if err != nil {
		st, _ := status.FromError(toStatus(err))
		end.Code, end.Message = uint32(st.Code()), st.Message()
	}
	// Output first, so the client has it all when it reads the end line.
	for _, name := range []string{streamStdout, streamStderr} {
		if c, ok := ss.conns[name]; ok {
			c.Close()
		}
	}
	_ = ctl.SetWriteDeadline(time.Now().Add(handshakeTimeout))
	_ = json.NewEncoder(ctl).Encode(end)
	s.sessions.remove(ss)
	cancel()
	<-ctlDone
}

// deadlineWriter gives every write to a client a deadline.
type deadlineWriter struct{ c net.Conn }

func (w deadlineWriter) Write(p []byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(outputWriteTimeout))
	return w.c.Write(p)
}

// countFDs counts the shim's open descriptors, for Debug.
func countFDs() int {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(entries)
}
