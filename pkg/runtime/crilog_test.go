package runtime

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type criLine struct {
	ts      time.Time
	stream  string
	partial bool
	content string
}

func parseCRILog(t *testing.T, data []byte) []criLine {
	t.Helper()
	var lines []criLine
	for _, raw := range strings.SplitAfter(string(data), "\n") {
		if raw == "" {
			continue
		}
		if !strings.HasSuffix(raw, "\n") {
			t.Fatalf("line without newline: %q", raw)
		}
		parts := strings.SplitN(strings.TrimSuffix(raw, "\n"), " ", 4)
		if len(parts) != 4 {
			t.Fatalf("malformed line %q", raw)
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			t.Fatalf("timestamp of %q: %v", raw, err)
		}
		if parts[2] != "P" && parts[2] != "F" {
			t.Fatalf("bad tag in %q", raw)
		}
		lines = append(lines, criLine{ts: ts, stream: parts[1], partial: parts[2] == "P", content: parts[3]})
	}
	return lines
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestLogFileCopy(t *testing.T) {
	long := strings.Repeat("x", MaxLogLineSize)
	tests := []struct {
		name  string
		input string
		want  []criLine
	}{
		{name: "empty", input: "", want: nil},
		{name: "one line", input: "hello\n", want: []criLine{{content: "hello"}}},
		{name: "two lines", input: "a\nb\n", want: []criLine{{content: "a"}, {content: "b"}}},
		{name: "empty line", input: "\n", want: []criLine{{content: ""}}},
		{name: "tail without newline", input: "a\nrest", want: []criLine{{content: "a"}, {content: "rest", partial: true}}},
		{name: "spaces kept", input: "  a b  \n", want: []criLine{{content: "  a b  "}}},
		{
			name:  "line longer than max",
			input: long + "yz\n",
			want:  []criLine{{content: long, partial: true}, {content: "yz"}},
		},
		{
			name:  "line exactly max plus newline",
			input: long[:MaxLogLineSize-1] + "\n",
			want:  []criLine{{content: long[:MaxLogLineSize-1]}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.log")
			l, err := OpenLogFile(path)
			if err != nil {
				t.Fatal(err)
			}
			before := time.Now()
			if err := l.Copy(Stdout, strings.NewReader(tt.input)); err != nil {
				t.Fatal(err)
			}
			if err := l.Close(); err != nil {
				t.Fatal(err)
			}
			got := parseCRILog(t, readFile(t, path))
			if len(got) != len(tt.want) {
				t.Fatalf("got %d lines, want %d: %+v", len(got), len(tt.want), got)
			}
			for i := range got {
				if got[i].stream != Stdout || got[i].partial != tt.want[i].partial || got[i].content != tt.want[i].content {
					t.Errorf("line %d = {%s %v %.20q}, want {stdout %v %.20q}", i,
						got[i].stream, got[i].partial, got[i].content, tt.want[i].partial, tt.want[i].content)
				}
				if got[i].ts.Before(before.Add(-time.Second)) || got[i].ts.After(time.Now().Add(time.Second)) {
					t.Errorf("line %d timestamp %v out of range", i, got[i].ts)
				}
			}
		})
	}
}

func TestLogFileTimestampFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fixed := time.Date(2024, 5, 6, 7, 8, 9, 1000, time.UTC)
	l.now = func() time.Time { return fixed }
	if err := l.WriteLine(Stderr, false, []byte("boom")); err != nil {
		t.Fatal(err)
	}
	l.Close()
	want := "2024-05-06T07:08:09.000001000Z stderr F boom\n"
	if got := string(readFile(t, path)); got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestLogFileConcurrentStreams(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.log")
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	gen := func(prefix string) io.Reader {
		var b bytes.Buffer
		for i := 0; i < n; i++ {
			b.WriteString(prefix + strings.Repeat("-", i%50) + "\n")
		}
		return &b
	}
	var wg sync.WaitGroup
	for _, s := range []string{Stdout, Stderr} {
		wg.Add(1)
		go func(stream string) {
			defer wg.Done()
			if err := l.Copy(stream, gen(stream)); err != nil {
				t.Error(err)
			}
		}(s)
	}
	wg.Wait()
	l.Close()
	counts := map[string]int{}
	for _, line := range parseCRILog(t, readFile(t, path)) {
		if line.partial || !strings.HasPrefix(line.content, line.stream) {
			t.Fatalf("interleaved or wrong line: %+v", line)
		}
		counts[line.stream]++
	}
	if counts[Stdout] != n || counts[Stderr] != n {
		t.Fatalf("counts = %v, want %d each", counts, n)
	}
}

func TestLogFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.log")
	l, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- l.Copy(Stdout, r) }()
	writeAndWait := func(s string, file string) {
		t.Helper()
		if _, err := w.WriteString(s); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(string(readFileOrEmpty(file)), strings.TrimSuffix(s, "\n")) {
			if time.Now().After(deadline) {
				t.Fatalf("%q never reached %s", s, file)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	writeAndWait("before\n", path)
	rotated := filepath.Join(dir, "c.log.1")
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	writeAndWait("between\n", rotated)
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	writeAndWait("after\n", path)
	w.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	old := parseCRILog(t, readFile(t, rotated))
	cur := parseCRILog(t, readFile(t, path))
	if len(old) != 2 || old[0].content != "before" || old[1].content != "between" {
		t.Errorf("rotated file = %+v", old)
	}
	if len(cur) != 1 || cur[0].content != "after" {
		t.Errorf("new file = %+v", cur)
	}
}

func readFileOrEmpty(path string) []byte {
	data, _ := os.ReadFile(path)
	return data
}

func TestLogFileDiscard(t *testing.T) {
	l, err := OpenLogFile("")
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Copy(Stdout, strings.NewReader("x\n")); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
}
