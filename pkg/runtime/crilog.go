package runtime

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// MaxLogLineSize is the longest content of one CRI log line; longer lines are
// split into partial ("P") chunks, as the kubelet and containerd do (16 KiB).
const MaxLogLineSize = 16 * 1024

// criTimestamp is RFC 3339 with fixed-width nanoseconds so that lines sort
// lexically; the kubelet parses it with time.RFC3339Nano.
const criTimestamp = "2006-01-02T15:04:05.000000000Z07:00"

// Stream names as the CRI log format spells them.
const (
	Stdout = "stdout"
	Stderr = "stderr"
)

// LogFile writes a container's output in the CRI log format
// (`<timestamp> <stream> <P|F> <content>\n`). Several streams may write at
// once; every line goes out in one write under a lock, so lines never
// interleave and Reopen never loses one.
type LogFile struct {
	mu   sync.Mutex
	path string
	f    *os.File // nil when path is "" (output discarded)
	now  func() time.Time
}

// OpenLogFile opens (appending, creating) the CRI log at path; "" discards.
func OpenLogFile(path string) (*LogFile, error) {
	l := &LogFile{path: path, now: time.Now}
	if path == "" {
		return l, nil
	}
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	l.f = f
	return l, nil
}

// openAppend opens the log for appending without following any symlink on the way. The shim
// runs as root and the log directory may be writable from a container (a hostPath volume of
// /var/log): the agent resolved every symlink in path before handing it over, so one found now
// was planted to aim the shim at another file ("c.log -> /etc/shadow", "app -> /etc"), and is
// refused. O_NONBLOCK keeps a planted FIFO from blocking the open; only a regular file is taken.
func openAppend(path string) (*os.File, error) {
	fd, err := unix.Openat2(unix.AT_FDCWD, path, &unix.OpenHow{
		Flags:   unix.O_WRONLY | unix.O_APPEND | unix.O_CREAT | unix.O_NOFOLLOW | unix.O_NONBLOCK | unix.O_CLOEXEC,
		Mode:    0o640,
		Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_NO_MAGICLINKS,
	})
	if errors.Is(err, unix.ELOOP) || errors.Is(err, unix.ENXIO) { // a symlink; a FIFO with no reader
		err = errors.Join(err, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return nil, fmt.Errorf("open container log %s: %w", path, err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("stat container log %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		unix.Close(fd)
		return nil, fmt.Errorf("container log %s is not a regular file: %w", path, errdefs.ErrInvalidArgument)
	}
	if err := unix.SetNonblock(fd, false); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("open container log %s: %w", path, err)
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Reopen opens the log path anew. The kubelet rotates logs by renaming the
// file and then asking the runtime to reopen: lines written before Reopen land
// in the renamed file, lines after it in the new one.
func (l *LogFile) Reopen() error {
	if l.path == "" {
		return nil
	}
	f, err := openAppend(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		return old.Close()
	}
	return nil
}

// Close closes the file; later writes are dropped.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// WriteLine writes one CRI line; partial marks a chunk that does not end a line.
func (l *LogFile) WriteLine(stream string, partial bool, content []byte) error {
	tag := "F"
	if partial {
		tag = "P"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	buf := make([]byte, 0, len(criTimestamp)+len(stream)+len(content)+5)
	buf = l.now().AppendFormat(buf, criTimestamp)
	buf = append(buf, ' ')
	buf = append(buf, stream...)
	buf = append(buf, ' ')
	buf = append(buf, tag...)
	buf = append(buf, ' ')
	buf = append(buf, content...)
	buf = append(buf, '\n')
	if _, err := l.f.Write(buf); err != nil {
		return fmt.Errorf("write container log %s: %w", l.path, err)
	}
	return nil
}

// Copy reads stream r until EOF and writes it to the log line by line: a
// full line is "F" (newline stripped), a chunk of MaxLogLineSize bytes
// without newline or a tail at EOF without newline is "P".
func (l *LogFile) Copy(stream string, r io.Reader) error {
	br := bufio.NewReaderSize(r, MaxLogLineSize)
	for {
		chunk, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			if werr := l.WriteLine(stream, false, chunk[:len(chunk)-1]); werr != nil {
				return werr
			}
		case errors.Is(err, bufio.ErrBufferFull):
			if werr := l.WriteLine(stream, true, chunk); werr != nil {
				return werr
			}
		default:
			if len(chunk) > 0 {
				if werr := l.WriteLine(stream, true, chunk); werr != nil {
					return werr
				}
			}
			// A tty master reads EIO once the container side is closed.
			if errors.Is(err, io.EOF) || errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EIO) {
				return nil
			}
			return fmt.Errorf("read container %s: %w", stream, err)
		}
	}
}
