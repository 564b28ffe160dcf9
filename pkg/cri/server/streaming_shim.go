package server

import (
	"context"
	"io"
	"sync"
	"time"

	"github.com/berth-runtime/berth/pkg/shim"
)

// The exec and attach half of ShimClient: the server's own copies of pkg/shim's types, so
// that fakes need not import pkg/shim.

// ShimTermSize is a terminal size in characters.
type ShimTermSize struct{ Width, Height uint16 }

// ShimStreams are the caller's ends of an exec or attach session. A nil field is a stream
// that was not requested; with a tty all output is on Stdout.
type ShimStreams struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Resize         <-chan ShimTermSize
}

// ShimExecOptions starts a process in a running container.
type ShimExecOptions struct {
	Cmd     []string
	Tty     bool
	Size    ShimTermSize
	Timeout time.Duration // 0 = none
	ShimStreams
}

// ShimExecResult is how an exec'd process ended: 128+signal when it was killed.
type ShimExecResult struct {
	ExitCode int32
	TimedOut bool
}

// ShimExecSyncResult is the captured output of an exec'd process, how many bytes of each
// stream were dropped, and its exit code.
type ShimExecSyncResult struct {
	Stdout, Stderr               []byte
	ExitCode                     int32
	StdoutDropped, StderrDropped int64
}

func (s shimClient) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration, maxOutput int) (ShimExecSyncResult, error) {
	r, err := s.c.ExecSync(ctx, id, cmd, timeout, maxOutput)
	return ShimExecSyncResult{
		Stdout: r.Stdout, Stderr: r.Stderr, ExitCode: r.ExitCode,
		StdoutDropped: r.StdoutDropped, StderrDropped: r.StderrDropped,
	}, err
}

func (s shimClient) Exec(ctx context.Context, id string, o ShimExecOptions) (ShimExecResult, error) {
	st, stop := toShimStreams(o.ShimStreams)
	defer stop()
	r, err := s.c.Exec(ctx, id, shim.ExecOptions{Cmd: o.Cmd, Tty: o.Tty, Size: shim.TermSize(o.Size), Timeout: o.Timeout, Streams: st})
	return ShimExecResult{ExitCode: r.ExitCode, TimedOut: r.TimedOut}, err
}

func (s shimClient) Attach(ctx context.Context, id string, tty bool, st ShimStreams) error {
	ss, stop := toShimStreams(st)
	defer stop()
	return s.c.Attach(ctx, id, tty, ss)
}

func toShimStreams(st ShimStreams) (shim.Streams, func()) {
	resize, stop := relaySizes(st.Resize, func(sz ShimTermSize) shim.TermSize { return shim.TermSize(sz) })
	return shim.Streams{Stdin: st.Stdin, Stdout: st.Stdout, Stderr: st.Stderr, Resize: resize}, stop
}

// relaySizes converts a channel of terminal sizes. The relay goroutine ends when in is
// closed or stop is called, whichever is first, so a session that ends while a resize is
// pending leaves nothing behind.
func relaySizes[T, U any](in <-chan T, conv func(T) U) (<-chan U, func()) {
	if in == nil {
		return nil, func() {}
	}
	out := make(chan U)
	done := make(chan struct{})
	go func() {
		defer close(out)
		for {
			select {
			case <-done:
				return
			case sz, ok := <-in:
				if !ok {
					return
				}
				select {
				case out <- conv(sz):
				case <-done:
					return
				}
			}
		}
	}()
	var once sync.Once
	return out, func() { once.Do(func() { close(done) }) }
}
