package runtime

import (
	"context"
	"sync"
	"time"
)

// The shim's ExecSync captures output in pkg/shim's session code, capped by the
// agent; these helpers give the runtime's own tests the same synchronous view of Exec.

// maxExecSyncOutput bounds each captured stream in the tests.
const maxExecSyncOutput = 16 << 20

// ExecSyncResult is the captured output and exit code of ExecSync.
type ExecSyncResult struct {
	Stdout, Stderr []byte
	ExitCode       int32
}

// ExecSync runs args in container id and captures up to maxExecSyncOutput
// bytes of each stream. On timeout the process tree is killed and the
// output so far is returned with an error wrapping context.DeadlineExceeded.
func (m *Manager) ExecSync(ctx context.Context, id string, args []string, timeout time.Duration) (ExecSyncResult, error) {
	var stdout, stderr LimitedBuffer
	stdout.Max, stderr.Max = maxExecSyncOutput, maxExecSyncOutput
	res, err := m.Exec(ctx, id, ExecOptions{Args: args, Stdout: &stdout, Stderr: &stderr, Timeout: timeout})
	return ExecSyncResult{Stdout: stdout.Bytes(), Stderr: stderr.Bytes(), ExitCode: res.ExitCode}, err
}

// LimitedBuffer keeps the first Max bytes written and silently drops the
// rest; it is safe for concurrent use.
type LimitedBuffer struct {
	Max int
	mu  sync.Mutex
	buf []byte
}

func (b *LimitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.Max - len(b.buf); room > 0 {
		b.buf = append(b.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

// Bytes returns a copy of what was kept.
func (b *LimitedBuffer) Bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]byte(nil), b.buf...)
}
