package runtime

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
)

// AttachOptions connect a client to a container's main process. Nil
// streams are not attached.
type AttachOptions struct {
	// Stdin is copied to the container's stdin (needs CreateOptions.Stdin;
	// ignored otherwise). With StdinOnce the container's stdin is closed
	// when this Stdin ends.
	Stdin io.Reader
	// Stdout and Stderr receive the output produced while attached (a tty's
	// output goes to Stdout); the CRI log gets it too. A writer that fails
	// is detached.
	Stdout, Stderr io.Writer
	Resize         <-chan TermSize // applied to the container's tty
}

// Attach streams the container's live output to opts and opts.Stdin to its
// stdin until the container's output ends or ctx is done. A stopped
// container is errdefs.ErrFailedPrecondition.
func (m *Manager) Attach(ctx context.Context, id string, opts AttachOptions) error {
	c, err := m.get(id)
	if err != nil {
		return err
	}
	st := c.status()
	if c.io == nil || (st.Status != StatusRunning && st.Status != StatusCreated) {
		return fmt.Errorf("attach to %q: container is %s: %w", id, st.Status, errdefs.ErrFailedPrecondition)
	}
	outW, errW := opts.Stdout, opts.Stderr
	if c.tty {
		errW = nil
	}
	detach := c.attached.add(outW, errW)
	defer detach()
	if opts.Stdin != nil && c.stdin != nil {
		go m.attachStdin(c, opts.Stdin)
	}
	stopResize := startResizer(c.io.console, opts.Resize)
	defer stopResize()
	select {
	case <-c.ioDone:
	case <-ctx.Done():
	}
	return nil
}

// attachStdin copies a client's stdin into the container's. It ends when
// in does (the shim server closes the connection when the session ends);
// with StdinOnce the first client to finish closes the container's stdin,
// which is how `kubectl run -i` lets a program see EOF.
func (m *Manager) attachStdin(c *container, in io.Reader) {
	_, _ = io.Copy(c.stdin, in)
	if c.stdinOnce && !c.tty {
		c.closeStdinOnce.Do(func() {
			if err := c.stdin.Close(); err != nil {
				m.log.Debug("close container stdin", "id", c.id, "err", err)
			}
		})
	}
}

// attachSet fans a container's output out to the attached clients.
type attachSet struct {
	mu      sync.Mutex
	clients map[*attachClient]struct{}
}

type attachClient struct {
	out, err io.Writer
}

func (s *attachSet) add(out, err io.Writer) (remove func()) {
	cl := &attachClient{out: out, err: err}
	s.mu.Lock()
	if s.clients == nil {
		s.clients = map[*attachClient]struct{}{}
	}
	s.clients[cl] = struct{}{}
	s.mu.Unlock()
	return func() {
		s.mu.Lock()
		delete(s.clients, cl)
		s.mu.Unlock()
	}
}

// Len is the number of attached clients.
func (s *attachSet) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.clients)
}

// stream returns the writer the log copier tees stream into.
func (s *attachSet) stream(name string) io.Writer {
	return streamWriter{s: s, stderr: name == Stderr}
}

type streamWriter struct {
	s      *attachSet
	stderr bool
}

// Write never fails: the CRI log must not stop because a client went away.
// A client whose write fails gets no more output.
func (w streamWriter) Write(p []byte) (int, error) {
	w.s.mu.Lock()
	defer w.s.mu.Unlock()
	for cl := range w.s.clients {
		dst := &cl.out
		if w.stderr {
			dst = &cl.err
		}
		if *dst == nil {
			continue
		}
		if _, err := (*dst).Write(p); err != nil {
			*dst = nil
		}
	}
	return len(p), nil
}

// AttachCount is the number of clients attached to container id.
func (m *Manager) AttachCount(id string) int {
	c, err := m.get(id)
	if err != nil {
		return 0
	}
	return c.attached.Len()
}
