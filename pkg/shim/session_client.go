package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/berth-runtime/berth/pkg/shim/api"
)

// Exec runs opts.Cmd in running container id with the given streams and
// returns when the process has exited and all its output was written to
// opts.Stdout/Stderr. When ctx ends first (the streaming client went
// away), the shim kills the exec'd process tree and Exec returns ctx's
// error. A container that is not running is errdefs.ErrFailedPrecondition,
// an unknown one errdefs.ErrNotFound; a command that cannot be started is
// an error, not an exit code.
func (c *Client) Exec(ctx context.Context, id string, opts ExecOptions) (ExecResult, error) {
	req := &api.SessionRequest{
		Id: id, Kind: sessionExec, Args: opts.Cmd, Tty: opts.Tty,
		Stdin: opts.Stdin != nil, Stdout: opts.Stdout != nil, Stderr: opts.Stderr != nil && !opts.Tty,
		Width: uint32(opts.Size.Width), Height: uint32(opts.Size.Height), TimeoutNs: int64(opts.Timeout),
	}
	end, err := c.session(ctx, req, opts.Streams)
	res := ExecResult{ExitCode: end.ExitCode, TimedOut: end.TimedOut}
	return res, err
}

// ExecSync runs cmd in container id, keeps the first maxOutput bytes of each
// stream (the caller's limit: the CRI server's is what fits in one gRPC
// response), counts the bytes it drops, and returns the exit code. After
// timeout (0 = none) the shim kills the process tree; the output so far is
// returned with an error wrapping context.DeadlineExceeded.
func (c *Client) ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration, maxOutput int) (ExecSyncResult, error) {
	stdout := &limitedBuffer{max: maxOutput}
	stderr := &limitedBuffer{max: maxOutput}
	res, err := c.Exec(ctx, id, ExecOptions{Cmd: cmd, Timeout: timeout, Streams: Streams{Stdout: stdout, Stderr: stderr}})
	return ExecSyncResult{
		Stdout: stdout.bytes(), Stderr: stderr.bytes(), ExitCode: res.ExitCode,
		StdoutDropped: stdout.dropped(), StderrDropped: stderr.dropped(),
	}, err
}

// Attach connects the streams to container id's main process: Stdout and
// Stderr get the output produced from now on (it is still logged), Stdin
// is written to the container's stdin (if it was created with Stdin; with
// StdinOnce its end closes the container's stdin), Resize resizes its tty.
// It returns when the container's output ends (it exited) or ctx ends,
// which detaches without touching the container. A stopped container is
// errdefs.ErrFailedPrecondition.
func (c *Client) Attach(ctx context.Context, id string, tty bool, s Streams) error {
	req := &api.SessionRequest{
		Id: id, Kind: sessionAttach, Tty: tty,
		Stdin: s.Stdin != nil, Stdout: s.Stdout != nil, Stderr: s.Stderr != nil && !tty,
	}
	_, err := c.session(ctx, req, s)
	return err
}

// session opens a session, connects its streams and runs it to its end line.
func (c *Client) session(ctx context.Context, req *api.SessionRequest, s Streams) (sessionEnd, error) {
	op := req.Kind + " " + req.Id
	resp, err := c.svc.OpenSession(ctx, req)
	if err != nil {
		return sessionEnd{}, fromStatus(op, err)
	}
	conns := map[string]net.Conn{}
	var closeOnce sync.Once
	closeAll := func() {
		closeOnce.Do(func() {
			for _, cn := range conns {
				cn.Close()
			}
		})
	}
	defer closeAll()
	names := []string{streamCtl}
	for name, on := range map[string]bool{streamStdin: req.Stdin, streamStdout: req.Stdout, streamStderr: req.Stderr} {
		if on {
			names = append(names, name)
		}
	}
	for _, name := range names {
		cn, err := c.dialStream(ctx, resp.Session, name)
		if err != nil {
			return sessionEnd{}, fmt.Errorf("shim %s: connect %s: %w", op, name, err)
		}
		conns[name] = cn
	}
	// Ending ctx drops every connection; the shim sees ctl close and stops.
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()

	done := make(chan struct{})
	defer close(done)
	if cn, ok := conns[streamStdin]; ok {
		go func() {
			_, _ = io.Copy(cn, s.Stdin)
			if uc, ok := cn.(*net.UnixConn); ok {
				_ = uc.CloseWrite()
			}
		}()
	}
	ctl := conns[streamCtl]
	if s.Resize != nil {
		go sendResizes(ctl, s.Resize, done)
	}
	var wg sync.WaitGroup
	for name, w := range map[string]io.Writer{streamStdout: s.Stdout, streamStderr: s.Stderr} {
		cn, ok := conns[name]
		if !ok {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := io.Copy(w, cn); err != nil && ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				// Our writer failed: nobody reads any more, so give up.
				closeAll()
			}
		}()
	}
	wg.Wait()
	var end sessionEnd
	derr := json.NewDecoder(ctl).Decode(&end)
	if ctx.Err() != nil {
		return end, fmt.Errorf("shim %s: %w", op, ctx.Err())
	}
	if derr != nil {
		return end, fmt.Errorf("shim %s: session ended without status: %w: %w", op, derr, errdefs.ErrUnavailable)
	}
	if end.Code != 0 {
		return end, fromStatus(op, status.Error(codes.Code(end.Code), end.Message))
	}
	return end, nil
}

// sendResizes forwards tty sizes on ctl until the session is done.
func sendResizes(ctl net.Conn, sizes <-chan TermSize, done <-chan struct{}) {
	enc := json.NewEncoder(ctl)
	for {
		select {
		case <-done:
			return
		case sz, ok := <-sizes:
			if !ok {
				return
			}
			if enc.Encode(sz) != nil {
				return
			}
		}
	}
}

// dialStream connects one stream of a session to the shim's io.sock.
func (c *Client) dialStream(ctx context.Context, token, stream string) (net.Conn, error) {
	var d net.Dialer
	cn, err := d.DialContext(ctx, "unix", filepath.Join(c.dir, IOSocketName))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = cn.SetDeadline(dl)
	}
	if _, err := fmt.Fprintf(cn, "%s %s\n", token, stream); err != nil {
		cn.Close()
		return nil, err
	}
	line, err := readLine(cn)
	if err != nil {
		cn.Close()
		return nil, err
	}
	if line != "ok" {
		cn.Close()
		return nil, errors.New(strings.TrimPrefix(line, "error "))
	}
	_ = cn.SetDeadline(time.Time{})
	return cn, nil
}

// limitedBuffer keeps the first max bytes written and counts the rest, which
// it drops: reading on keeps the process from blocking on a full pipe.
type limitedBuffer struct {
	mu   sync.Mutex
	max  int
	buf  []byte
	lost int64
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := min(max(b.max-len(b.buf), 0), len(p))
	b.buf = append(b.buf, p[:keep]...)
	b.lost += int64(len(p) - keep)
	return len(p), nil
}

func (b *limitedBuffer) dropped() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lost
}

func (b *limitedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}

// Stats returns the container's cgroup usage.
func (c *Client) Stats(ctx context.Context, id string) (Stats, error) {
	r, err := c.svc.Stats(ctx, &api.IDRequest{Id: id})
	if err != nil {
		return Stats{}, fromStatus("stats "+id, err)
	}
	return Stats{
		Timestamp:             fromUnixNano(r.Timestamp),
		CPUUsageNanos:         r.CpuUsageNs,
		MemoryUsageBytes:      r.MemoryUsageBytes,
		MemoryWorkingSetBytes: r.MemoryWorkingSetBytes,
		MemoryRSSBytes:        r.MemoryRssBytes,
		MemoryLimitBytes:      r.MemoryLimitBytes,
		PageFaults:            r.PageFaults,
		MajorPageFaults:       r.MajorPageFaults,
		SwapUsageBytes:        r.SwapUsageBytes,
		PidsCurrent:           r.PidsCurrent,
		PidsLimit:             r.PidsLimit,
	}, nil
}

// Debug returns the shim's leak counters.
func (c *Client) Debug(ctx context.Context) (DebugInfo, error) {
	r, err := c.svc.Debug(ctx, &api.Empty{})
	if err != nil {
		return DebugInfo{}, fromStatus("debug", err)
	}
	return DebugInfo{Sessions: int(r.Sessions), Goroutines: int(r.Goroutines), FDs: int(r.Fds), Execs: int(r.Execs)}, nil
}
