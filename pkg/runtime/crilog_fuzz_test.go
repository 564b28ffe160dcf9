package runtime

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLogFileCopy writes arbitrary output on two streams at once, in chunks split anywhere,
// and checks that the log is made of well-formed CRI lines (every line complete, content at
// most MaxLogLineSize bytes and without a newline) and that, per stream, joining the contents
// (with a newline after each F line) gives back exactly the bytes the container wrote. The
// kubelet rebuilds `kubectl logs` output this way, so any loss, duplication or reordering
// inside a stream is a user-visible bug.
func FuzzLogFileCopy(f *testing.F) {
	f.Add([]byte("hello\nworld\n"), []byte{3, 1}, uint16(0), []byte("err\n"))
	f.Add([]byte("no newline"), []byte{}, uint16(0), []byte(""))
	f.Add([]byte("a\r\nb\rc\n\n\n"), []byte{1, 1, 1, 1, 1}, uint16(0), []byte("\r"))
	f.Add([]byte("\n"), []byte{0}, uint16(MaxLogLineSize), []byte("x"))
	f.Add([]byte("tail"), []byte{255, 7}, uint16(MaxLogLineSize-1), []byte("\n\n"))
	f.Add([]byte("x\n"), []byte{}, uint16(MaxLogLineSize+1), []byte{})
	f.Add([]byte{0, 0xff, ' ', 'F', ' ', '\n'}, []byte{2}, uint16(2*MaxLogLineSize), []byte("2 stderr F x\n"))
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, out, cuts []byte, long uint16, errOut []byte) {
		// A run of `long` bytes first makes lines longer than the 16 KiB limit reachable.
		stdout := append(bytes.Repeat([]byte{'y'}, int(long)), out...)
		stderr := errOut
		path := filepath.Join(dir, "log")
		l, err := OpenLogFile(path)
		if err != nil {
			t.Fatal(err)
		}
		defer func() {
			l.Close()
			removeFile(t, path)
		}()
		errs := make(chan error, 2)
		for _, s := range []struct {
			name string
			data []byte
		}{{Stdout, stdout}, {Stderr, stderr}} {
			r, w := io.Pipe()
			go func() { errs <- l.Copy(s.name, r) }()
			go writeChunks(w, s.data, cuts)
		}
		for range 2 {
			if err := <-errs; err != nil {
				t.Fatalf("Copy: %v", err)
			}
		}
		got := map[string][]byte{}
		for _, line := range parseCRILog(t, readFile(t, path)) {
			if len(line.content) > MaxLogLineSize {
				t.Fatalf("%s line of %d bytes, over MaxLogLineSize", line.stream, len(line.content))
			}
			if line.stream != Stdout && line.stream != Stderr {
				t.Fatalf("unknown stream %q", line.stream)
			}
			got[line.stream] = append(got[line.stream], line.content...)
			if !line.partial {
				got[line.stream] = append(got[line.stream], '\n')
			}
		}
		if !bytes.Equal(got[Stdout], stdout) {
			t.Fatalf("stdout rebuilt from the log differs:\n got %q\nwant %q", got[Stdout], stdout)
		}
		if !bytes.Equal(got[Stderr], stderr) {
			t.Fatalf("stderr rebuilt from the log differs:\n got %q\nwant %q", got[Stderr], stderr)
		}
	})
}

// writeChunks writes data in pieces whose sizes come from cuts (cycled), as a container's
// output arrives from a pipe in reads of any size, then closes w.
func writeChunks(w *io.PipeWriter, data, cuts []byte) {
	for i := 0; len(data) > 0; i++ {
		n := len(data)
		if len(cuts) > 0 {
			n = min(n, int(cuts[i%len(cuts)])+1)
		}
		if _, err := w.Write(data[:n]); err != nil {
			w.CloseWithError(err)
			return
		}
		data = data[n:]
	}
	w.Close()
}

func removeFile(t *testing.T, path string) {
	t.Helper()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
}
