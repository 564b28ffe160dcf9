package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"

	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	utilexec "k8s.io/utils/exec"
)

// portDialTimeout bounds the connect to a pod's port; a port nobody listens on is refused at
// once, this only covers a pod that drops SYNs.
const portDialTimeout = 10 * time.Second

// initialSizeWait bounds the wait for a tty exec's first size from a client that sends none.
const initialSizeWait = 500 * time.Millisecond

// streamRuntime is the streaming server's sessionRuntime: it runs the sessions whose URLs Exec,
// Attach and PortForward handed out. ctx is the client connection's (streaming.go), so a
// client that leaves ends the session: the shim kills an exec'd process tree, an attach
// only detaches.
type streamRuntime struct{ s *Service }

func (r streamRuntime) Exec(ctx context.Context, id string, cmd []string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, cl, err := r.s.execTarget(id)
	if err != nil {
		return fmt.Errorf("exec: %w", err)
	}
	var size ShimTermSize
	if tty {
		size = firstSize(ctx, resize)
	}
	sizes, stop := relaySizes(resize, toShimSize)
	defer stop()
	res, err := cl.Exec(ctx, c.ID(), ShimExecOptions{Cmd: cmd, Tty: tty, Size: size, ShimStreams: streamsOf(in, out, errOut, sizes)})
	if err != nil && errors.Is(context.Cause(ctx), errClientGone) {
		// Nobody is left to tell; the shim has killed the process tree.
		r.s.log.Debug("exec client left; command killed", "container", c.ID(), "cmd", cmd)
		return nil
	}
	if err != nil {
		return fmt.Errorf("exec in container %s: %w", c.ID(), err)
	}
	if res.ExitCode != 0 {
		// The streaming package reports exactly this type (it type-asserts) to the client as
		// the exit code: kubectl exec exits with it, crictl prints it.
		return utilexec.CodeExitError{Err: fmt.Errorf("command %q exited with %d", cmd, res.ExitCode), Code: int(res.ExitCode)}
	}
	return nil
}

func (r streamRuntime) Attach(ctx context.Context, id string, in io.Reader, out, errOut io.WriteCloser, tty bool, resize <-chan remotecommand.TerminalSize) error {
	c, cl, err := r.s.execTarget(id)
	if err != nil {
		return fmt.Errorf("attach: %w", err)
	}
	sizes, stop := relaySizes(resize, toShimSize)
	defer stop()
	// The container's own tty decides how its output is framed, whatever the client asked.
	tty = c.Metadata().Config.ContainerConfig.GetTty()
	if err := cl.Attach(ctx, c.ID(), tty, streamsOf(in, out, errOut, sizes)); err != nil {
		return fmt.Errorf("attach to container %s: %w", c.ID(), err)
	}
	return nil
}

// PortForward connects stream to port on the pod's loopback and copies both ways until the
// pod's side is done or either side fails.
func (r streamRuntime) PortForward(ctx context.Context, id string, port int32, stream io.ReadWriteCloser) error {
	sb, err := r.s.forwardTarget(id)
	if err != nil {
		return fmt.Errorf("port forward: %w", err)
	}
	conn, err := r.s.dialPod(sb.Metadata().NetNS, port)
	if err != nil {
		return fmt.Errorf("port forward to sandbox %s port %d: %w", sb.ID(), port, err)
	}
	defer conn.Close()
	return pipe(ctx, stream, conn)
}

// dialPod connects to port on the loopback of the network namespace pinned at netns ("" =
// the host's, for host-network pods). Only the socket's creation must happen inside the
// namespace: the socket stays in it, so the copying runs on ordinary goroutines.
func (s *Service) dialPod(netns string, port int32) (net.Conn, error) {
	if netns == "" {
		return dialLoopback(port)
	}
	var conn net.Conn
	err := s.namespaces.Do(netns, func() error {
		c, err := dialLoopback(port)
		conn = c
		return err
	})
	return conn, err
}

// dialLoopback tries IPv4 loopback, then IPv6, as the kubelet's docker shim did.
func dialLoopback(port int32) (net.Conn, error) {
	d := net.Dialer{Timeout: portDialTimeout}
	p := strconv.Itoa(int(port))
	c, err4 := d.Dial("tcp4", net.JoinHostPort("127.0.0.1", p))
	if err4 == nil {
		return c, nil
	}
	c, err6 := d.Dial("tcp6", net.JoinHostPort("::1", p))
	if err6 == nil {
		return c, nil
	}
	return nil, fmt.Errorf("dial localhost:%d: %w", port, errors.Join(err4, err6))
}

// pipe copies between the client's stream and the pod's connection. The client closing its
// stream half-closes the connection, so a request/response protocol still gets its answer;
// the session ends when the pod's side has nothing more to send (or ctx ends).
//
// The upstream copy may outlive the call while blocked reading the client's stream; it ends
// when the client closes that stream or its connection ends, and finds conn closed.
func pipe(ctx context.Context, stream io.ReadWriteCloser, conn net.Conn) error {
	upErr := make(chan error, 1)
	go func() {
		_, err := io.Copy(conn, stream)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		upErr <- err
	}()
	down := make(chan error, 1)
	go func() {
		_, err := io.Copy(stream, conn)
		down <- err
	}()
	var err error
	select {
	case err = <-down:
	case err = <-upErr:
		// A broken client stream (not a clean end) means nobody reads the answer.
		if err == nil {
			err = <-down
		}
	case <-ctx.Done():
		err = ctx.Err()
	}
	conn.Close()
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// firstSize waits briefly for the client's first terminal size, which it sends as soon as its
// streams are up: a process that asks for its size at once (stty size, a full-screen
// program) must not see 0x0 because the exec won the race.
func firstSize(ctx context.Context, resize <-chan remotecommand.TerminalSize) ShimTermSize {
	if resize == nil {
		return ShimTermSize{}
	}
	t := time.NewTimer(initialSizeWait)
	defer t.Stop()
	select {
	case sz, ok := <-resize:
		if ok {
			return toShimSize(sz)
		}
	case <-t.C:
	case <-ctx.Done():
	}
	return ShimTermSize{}
}

func toShimSize(sz remotecommand.TerminalSize) ShimTermSize {
	return ShimTermSize{Width: sz.Width, Height: sz.Height}
}

// streamsOf keeps nil streams nil: a nil io.WriteCloser must not become a non-nil io.Writer
// holding a nil pointer, which the shim would take as a requested stream.
func streamsOf(in io.Reader, out, errOut io.WriteCloser, sizes <-chan ShimTermSize) ShimStreams {
	st := ShimStreams{Stdin: in, Resize: sizes}
	if out != nil {
		st.Stdout = out
	}
	if errOut != nil {
		st.Stderr = errOut
	}
	return st
}
