package server

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestExecSyncOutputFitsOneMessage: however much the command printed, and whatever the shim
// kept of it, the response fits in one gRPC message, keeps the start of each stream and says
// on stderr what was dropped.
func TestExecSyncOutputFitsOneMessage(t *testing.T) {
	mib := func(n int, c byte) []byte { return bytes.Repeat([]byte{c}, n<<20) }
	tests := []struct {
		name      string
		res       ShimExecSyncResult
		timeout   int64
		err       error
		wantNotes []string
	}{
		{
			name:      "32 MiB on stdout",
			res:       ShimExecSyncResult{Stdout: mib(32, 'o'), ExitCode: 1},
			wantNotes: []string{fmt.Sprintf("stdout truncated to its first %d bytes, %d more dropped", execSyncOutputLimit, 32<<20-execSyncOutputLimit)},
		},
		{
			name: "16 MiB on each stream",
			res:  ShimExecSyncResult{Stdout: mib(16, 'o'), Stderr: mib(16, 'e'), ExitCode: 1},
			wantNotes: []string{
				fmt.Sprintf("stdout truncated to its first %d bytes, %d more dropped", execSyncOutputLimit, 16<<20-execSyncOutputLimit),
				fmt.Sprintf("stderr truncated to its first %d bytes, %d more dropped", execSyncOutputLimit, 16<<20-execSyncOutputLimit),
			},
		},
		{
			name: "the shim's own drops are reported",
			res:  ShimExecSyncResult{Stdout: []byte("head"), StdoutDropped: 24 << 20, Stderr: []byte("e"), ExitCode: 1},
			wantNotes: []string{
				fmt.Sprintf("stdout truncated to its first 4 bytes, %d more dropped", 24<<20),
			},
		},
		{
			name: "timed out with a full buffer", timeout: 1, err: context.DeadlineExceeded,
			res: ShimExecSyncResult{Stdout: mib(20, 'o'), Stderr: mib(20, 'e'), ExitCode: 137},
			wantNotes: []string{
				"stdout truncated", "stderr truncated", "command timed out after 1s",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			podID, id := e.runningContainer(t, false, false)
			x := e.scripted(t, podID, &execShim{syncRes: tt.res, err: tt.err})
			resp, err := e.svc.ExecSync(context.Background(), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"cat", "big"}, Timeout: tt.timeout})
			if err != nil {
				t.Fatal(err)
			}
			if x.gotMaxOutput != execSyncOutputLimit {
				t.Errorf("shim asked to keep %d bytes a stream, want %d", x.gotMaxOutput, execSyncOutputLimit)
			}
			if n := proto.Size(resp); n > MaxMessageSize {
				t.Fatalf("response is %d bytes, over the %d byte gRPC limit", n, MaxMessageSize)
			}
			if !bytes.HasPrefix(tt.res.Stdout, resp.Stdout) || len(resp.Stdout) != min(len(tt.res.Stdout), execSyncOutputLimit) {
				t.Errorf("stdout is %d bytes, want the first %d of the command's", len(resp.Stdout), min(len(tt.res.Stdout), execSyncOutputLimit))
			}
			// The notes follow what was kept of the command's stderr.
			kept := tt.res.Stderr[:min(len(tt.res.Stderr), execSyncOutputLimit)]
			if !bytes.HasPrefix(resp.Stderr, kept) {
				t.Fatalf("stderr does not start with the command's own")
			}
			if resp.ExitCode != tt.res.ExitCode {
				t.Errorf("exit code %d", resp.ExitCode)
			}
			tail := string(resp.Stderr[len(kept):])
			for _, note := range tt.wantNotes {
				if !strings.Contains(tail, note) {
					t.Errorf("stderr's tail %q lacks %q", tail, note)
				}
			}
		})
	}
}
