package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// TermSize is a terminal's size in characters.
type TermSize struct{ Width, Height uint16 }

// ExecOptions describe a process to run in a running container. It runs
// with the container's own user, environment, working directory,
// capabilities and no_new_privs, in its namespaces and cgroup.
type ExecOptions struct {
	Args []string
	Tty  bool
	// Stdin nil gives the process /dev/null. On EOF the process's stdin is
	// closed (with Tty it is left open: closing a terminal hangs it up).
	Stdin io.Reader
	// Stdout and Stderr nil discard; with Tty all output goes to Stdout.
	// A writer that fails is dropped and the output drained, so that a
	// vanished client never blocks the process.
	Stdout, Stderr io.Writer
	Size           TermSize        // initial tty size; zero leaves the default
	Resize         <-chan TermSize // tty size changes; may be nil
	// Timeout kills the process tree after this long; 0 is no limit.
	Timeout time.Duration
}

// ExecResult is how an exec'd process ended.
type ExecResult struct {
	ExitCode int32 // 128+signal when killed
	TimedOut bool
}

// Exec runs a process in container id and blocks until it has exited and
// its output is drained. When ctx is done or Timeout passes, the process,
// its process group and its descendants are SIGKILLed and reaped; a
// timeout returns the result with an error wrapping
// context.DeadlineExceeded. A container that is not running is
// errdefs.ErrFailedPrecondition, an unknown one errdefs.ErrNotFound.
func (m *Manager) Exec(ctx context.Context, id string, opts ExecOptions) (ExecResult, error) {
	if len(opts.Args) == 0 {
		return ExecResult{}, fmt.Errorf("exec in %q: no command: %w", id, errdefs.ErrInvalidArgument)
	}
	c, err := m.get(id)
	if err != nil {
		return ExecResult{}, err
	}
	st := c.status()
	if (c.lc == nil && c.oci == nil) || st.Status != StatusRunning {
		return ExecResult{}, fmt.Errorf("exec in %q: container is %s: %w", id, st.Status, errdefs.ErrFailedPrecondition)
	}
	if c.oci != nil {
		return m.execWithOCI(ctx, c, st, opts)
	}
	proc, err := m.execProcess(st, opts)
	if err != nil {
		return ExecResult{}, err
	}
	pio, err := setupIO(proc, CreateOptions{Tty: opts.Tty, Stdin: opts.Stdin != nil})
	if err != nil {
		return ExecResult{}, err
	}
	pid, err := m.runExec(c, proc, pio)
	if err != nil {
		return ExecResult{}, err
	}
	m.execs.Add(1)
	defer m.execs.Add(-1)
	return m.superviseExec(ctx, id, proc.Wait, pid, pio, opts)
}

// execWithOCI is Exec for a container of an external runtime.
func (m *Manager) execWithOCI(ctx context.Context, c *container, st Status, opts ExecOptions) (ExecResult, error) {
	if opts.Tty {
		return ExecResult{}, fmt.Errorf("exec in %q: a tty is not supported with the external OCI runtime %s: %w", c.id, m.oci.binary, errdefs.ErrNotImplemented)
	}
	pio := &processIO{}
	stdio, err := setupPipes(pio, opts.Stdin != nil)
	if err != nil {
		return ExecResult{}, err
	}
	p, err := m.execOCI(c, st, opts, pio, stdio)
	if err != nil {
		return ExecResult{}, err
	}
	m.execs.Add(1)
	defer m.execs.Add(-1)
	return m.superviseExec(ctx, c.id, p.Wait, p.Pid, pio, opts)
}

// execProcess builds the process from the container's spec, so an exec
// gets no more privilege than the container's own process.
func (m *Manager) execProcess(st Status, opts ExecOptions) (*libcontainer.Process, error) {
	spec, err := loadSpec(st.Bundle)
	if err != nil {
		return nil, fmt.Errorf("exec in %q: %w", st.ID, err)
	}
	proc, err := newProcess(spec.Process)
	if err != nil {
		return nil, fmt.Errorf("exec in %q: %w", st.ID, err)
	}
	proc.Args = opts.Args
	// nil rlimits inherit the container's, already clamped at create.
	proc.Rlimits = nil
	proc.ConsoleWidth, proc.ConsoleHeight = opts.Size.Width, opts.Size.Height
	return proc, nil
}

// runExec starts proc in the container. Like the init, the exec'd process
// is reparented to the shim (a subreaper) when libcontainer's intermediate
// exits, so the reaper is held off until the pid is owned.
func (m *Manager) runExec(c *container, proc *libcontainer.Process, pio *processIO) (int, error) {
	release := m.reaper.hold()
	err := c.lc.Run(proc)
	pid := 0
	if err == nil {
		pid, _ = proc.Pid()
		m.reaper.own(pid)
	}
	release()
	pio.closeChildEnds()
	if err != nil {
		pio.closeParentEnds()
		if lcStopped(c.lc) {
			return 0, fmt.Errorf("exec in %q: container stopped: %w", c.id, errdefs.ErrFailedPrecondition)
		}
		return 0, fmt.Errorf("exec in %q: %w", c.id, err)
	}
	if err := pio.receiveConsole(); err != nil {
		killTree(pid)
		_, _ = proc.Wait()
		m.reaper.disown(pid)
		return 0, fmt.Errorf("exec in %q: %w", c.id, err)
	}
	return pid, nil
}

func (m *Manager) superviseExec(ctx context.Context, id string, wait func() (*os.ProcessState, error), pid int, pio *processIO, opts ExecOptions) (ExecResult, error) {
	copied := pio.copyOut(opts.Stdout, opts.Stderr)
	pio.copyIn(opts.Stdin, opts.Tty)
	stopResize := startResizer(pio.console, opts.Resize)
	defer stopResize()

	exited := make(chan *os.ProcessState, 1)
	go func() {
		ps, _ := wait()
		exited <- ps
	}()
	var timeout <-chan time.Time
	if opts.Timeout > 0 {
		t := time.NewTimer(opts.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var res ExecResult
	var ps *os.ProcessState
	var stopErr error
	select {
	case ps = <-exited:
	case <-timeout:
		res.TimedOut = true
		stopErr = fmt.Errorf("exec in %q: timeout %s exceeded: %w", id, opts.Timeout, context.DeadlineExceeded)
	case <-ctx.Done():
		stopErr = fmt.Errorf("exec in %q: %w", id, ctx.Err())
	}
	if ps == nil {
		killTree(pid)
		ps = <-exited
	}
	m.reaper.disown(pid)
	res.ExitCode, _ = exitCode(ps)
	// A daemonised descendant may hold the output open forever.
	select {
	case <-copied:
	case <-time.After(ioDrainTimeout):
	}
	pio.closeParentEnds()
	<-copied
	return res, stopErr
}

// copyOut copies the process's output to the writers; the channel closes
// when every stream reached EOF or was closed.
func (p *processIO) copyOut(stdout, stderr io.Writer) <-chan struct{} {
	done := make(chan struct{})
	var wg sync.WaitGroup
	cp := func(w io.Writer, r *os.File) {
		defer wg.Done()
		_, _ = io.Copy(&lenientWriter{w: w}, r)
	}
	if p.console != nil {
		wg.Add(1)
		go cp(stdout, p.console)
	} else {
		wg.Add(2)
		go cp(stdout, p.stdout)
		go cp(stderr, p.stderr)
	}
	go func() {
		wg.Wait()
		close(done)
	}()
	return done
}

// copyIn feeds in to the process's stdin and closes it at EOF (a tty is
// left open). The copy blocks in in.Read, which only its owner can
// interrupt: the shim server closes the connection behind it when the
// exec ends, and closeParentEnds makes any later write fail.
func (p *processIO) copyIn(in io.Reader, tty bool) {
	if in == nil || p.stdin == nil {
		return
	}
	dst := p.stdin
	go func() {
		_, _ = io.Copy(dst, in)
		if !tty {
			dst.Close()
		}
	}()
}

// startResizer applies size changes to a tty master until stopped.
func startResizer(console *os.File, sizes <-chan TermSize) (stop func()) {
	if console == nil || sizes == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case sz, ok := <-sizes:
				if !ok {
					return
				}
				_ = resizeConsole(console, sz)
			}
		}
	}()
	return func() {
		close(done)
		wg.Wait()
	}
}

func resizeConsole(console *os.File, sz TermSize) error {
	if sz.Width == 0 || sz.Height == 0 {
		return nil
	}
	rc, err := console.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	err = rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Col: sz.Width, Row: sz.Height})
	})
	return errors.Join(err, ierr)
}

// lenientWriter forwards to w until w fails, then swallows everything so
// the reader keeps draining the process's pipe.
type lenientWriter struct {
	w      io.Writer
	failed bool
}

func (l *lenientWriter) Write(p []byte) (int, error) {
	if l.w == nil || l.failed {
		return len(p), nil
	}
	if _, err := l.w.Write(p); err != nil {
		l.failed = true
	}
	return len(p), nil
}

// ExecCount is the number of exec'd processes the shim is supervising.
func (m *Manager) ExecCount() int { return int(m.execs.Load()) }
