package runtime

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/opencontainers/runc/libcontainer"
	"golang.org/x/sys/unix"
)

// processIO holds both ends of a container init's stdio. The parent ends
// stay in the shim; the child ends go to the init and are closed here once
// it has them.
type processIO struct {
	stdin          *os.File // write end kept open, or the tty master
	stdout, stderr *os.File // read ends
	console        *os.File // tty master (stdout and stdin share it)
	consoleSock    *os.File // parent end of the console socket
	child          []*os.File
}

// setupIO gives the process pipes (or a console socket with Tty) as *os.File
// so that os/exec hands them over without copying goroutines of its own.
func setupIO(proc *libcontainer.Process, opts CreateOptions) (*processIO, error) {
	pio := &processIO{}
	if opts.Tty {
		pair, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("console socket: %w", err)
		}
		pio.consoleSock = os.NewFile(uintptr(pair[0]), "console-parent")
		child := os.NewFile(uintptr(pair[1]), "console-child")
		pio.child = append(pio.child, child)
		proc.ConsoleSocket = child
		return pio, nil
	}
	stdio, err := setupPipes(pio, opts.Stdin)
	if err != nil {
		return nil, err
	}
	if stdio.in != nil {
		proc.Stdin = stdio.in
	}
	proc.Stdout, proc.Stderr = stdio.out, stdio.err
	return pio, nil
}

// childStdio are the ends of the pipes the process gets; in is nil without stdin.
type childStdio struct{ in, out, err *os.File }

// setupPipes makes the stdin (when asked) and output pipes of a process without a tty.
func setupPipes(pio *processIO, stdin bool) (childStdio, error) {
	var c childStdio
	if stdin {
		r, w, err := os.Pipe()
		if err != nil {
			return c, fmt.Errorf("stdin pipe: %w", err)
		}
		c.in = r
		pio.stdin = w
		pio.child = append(pio.child, r)
	}
	for _, dst := range []**os.File{&pio.stdout, &pio.stderr} {
		r, w, err := os.Pipe()
		if err != nil {
			pio.closeChildEnds()
			pio.closeParentEnds()
			return c, fmt.Errorf("output pipe: %w", err)
		}
		*dst = r
		pio.child = append(pio.child, w)
	}
	c.out, c.err = pio.child[len(pio.child)-2], pio.child[len(pio.child)-1]
	return c, nil
}

func (p *processIO) closeChildEnds() {
	for _, f := range p.child {
		f.Close()
	}
	p.child = nil
}

func (p *processIO) closeParentEnds() {
	for _, f := range []*os.File{p.stdout, p.stderr, p.console, p.consoleSock} {
		if f != nil {
			f.Close()
		}
	}
	if p.stdin != nil {
		p.stdin.Close()
	}
}

// receiveConsole takes the tty master that the container's init sent over
// the console socket during setup.
func (p *processIO) receiveConsole() error {
	if p.consoleSock == nil {
		return nil
	}
	defer func() {
		p.consoleSock.Close()
		p.consoleSock = nil
	}()
	// The init sent the fd before Start returned; a deadline guards a bug.
	fd := int(p.consoleSock.Fd())
	tv := unix.NsecToTimeval(int64(10 * time.Second))
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	buf := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4))
	_, oobn, _, _, err := unix.Recvmsg(fd, buf, oob, unix.MSG_CMSG_CLOEXEC)
	if err != nil {
		return fmt.Errorf("receive tty master: %w", err)
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil || len(msgs) != 1 {
		return fmt.Errorf("receive tty master: bad control message: %v", err)
	}
	fds, err := unix.ParseUnixRights(&msgs[0])
	if err != nil || len(fds) != 1 {
		return fmt.Errorf("receive tty master: no fd: %v", err)
	}
	// Non-blocking makes the file pollable, so Close can interrupt a Read.
	if err := unix.SetNonblock(fds[0], true); err != nil {
		unix.Close(fds[0])
		return fmt.Errorf("tty master: %w", err)
	}
	p.console = os.NewFile(uintptr(fds[0]), "tty-master")
	p.stdin = p.console
	return nil
}

// copyIO copies the container's output into its CRI log until the streams
// close; a tty's output is logged as stdout.
func (m *Manager) copyIO(c *container, p *processIO) {
	defer close(c.ioDone)
	var wg sync.WaitGroup
	copyStream := func(stream string, r *os.File) {
		defer wg.Done()
		if err := c.log.Copy(stream, io.TeeReader(r, c.attached.stream(stream))); err != nil {
			m.log.Warn("copy container output", "id", c.id, "stream", stream, "err", err)
		}
	}
	switch {
	case p.console != nil:
		wg.Add(1)
		go copyStream(Stdout, p.console)
	default:
		wg.Add(2)
		go copyStream(Stdout, p.stdout)
		go copyStream(Stderr, p.stderr)
	}
	wg.Wait()
}
