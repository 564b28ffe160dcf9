package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// MaxMessageSize is the largest gRPC message the CRI server sends or receives (cmd/agent sets
// both limits from it). It matches the kubelet's client limit, so that large List answers pass.
const MaxMessageSize = 16 << 20

// execSyncReserve is what an ExecSyncResponse needs besides its output: protobuf framing and
// the exit code (a few dozen bytes) and berth's notes on stderr (under 200 bytes each).
const execSyncReserve = 4 << 10

// execSyncOutputLimit bounds each of ExecSync's stdout and stderr so that the response always
// fits in MaxMessageSize, whatever the command prints: a larger one would fail to send and turn
// the command's outcome into a transport error. The kubelet's exec prober reads only the
// first 10 KiB anyway. The rest is dropped and the drop noted on stderr.
const execSyncOutputLimit = (MaxMessageSize - execSyncReserve) / 2

// execTimeoutExitCode is reported for a command killed at its timeout when the shim has no
// better code: 128+SIGKILL, what a shell shows for a killed child.
const execTimeoutExitCode = 128 + 9

// ExecSync runs a command in a running container and returns its output and exit code.
//
// At the timeout the shim kills the command's process tree. The reply then carries the
// output so far, a note on stderr and a non-zero exit code rather than a gRPC error, which
// would lose the output: the kubelet's exec prober counts a non-zero code as a failure and
// shows the output in the probe event, and crictl and critest see the failure.
func (s *Service) ExecSync(ctx context.Context, req *runtimeapi.ExecSyncRequest) (*runtimeapi.ExecSyncResponse, error) {
	if len(req.GetCmd()) == 0 {
		return nil, fmt.Errorf("exec sync: no command: %w", errdefs.ErrInvalidArgument)
	}
	if req.GetTimeout() < 0 {
		return nil, fmt.Errorf("exec sync: negative timeout %d: %w", req.GetTimeout(), errdefs.ErrInvalidArgument)
	}
	c, cl, err := s.execTarget(req.GetContainerId())
	if err != nil {
		return nil, fmt.Errorf("exec sync: %w", err)
	}
	timeout := time.Duration(req.GetTimeout()) * time.Second
	res, err := cl.ExecSync(ctx, c.ID(), req.GetCmd(), timeout, execSyncOutputLimit)
	if err != nil && timedOut(ctx, timeout, err) {
		if res.ExitCode == 0 {
			res.ExitCode = execTimeoutExitCode
		}
		return execSyncResponse(res, fmt.Sprintf("berth: command timed out after %s and was killed\n", timeout)), nil
	}
	if err != nil {
		return nil, fmt.Errorf("exec sync in container %s: %w", c.ID(), err)
	}
	return execSyncResponse(res, ""), nil
}

// execSyncResponse caps each stream at execSyncOutputLimit, whatever the shim kept, and
// appends to stderr a note for each truncated stream, then the given note.
func execSyncResponse(res ShimExecSyncResult, note string) *runtimeapi.ExecSyncResponse {
	stdout, outDropped := capOutput(res.Stdout, res.StdoutDropped)
	stderr, errDropped := capOutput(res.Stderr, res.StderrDropped)
	// A full slice expression: the notes never write into the shim's buffer.
	errKept := len(stderr)
	stderr = stderr[:errKept:errKept]
	if outDropped > 0 {
		stderr = fmt.Appendf(stderr, "berth: stdout truncated to its first %d bytes, %d more dropped\n", len(stdout), outDropped)
	}
	if errDropped > 0 {
		stderr = fmt.Appendf(stderr, "berth: stderr truncated to its first %d bytes, %d more dropped\n", errKept, errDropped)
	}
	stderr = append(stderr, note...)
	return &runtimeapi.ExecSyncResponse{Stdout: stdout, Stderr: stderr, ExitCode: res.ExitCode}
}

// capOutput keeps the first execSyncOutputLimit bytes of b and adds the rest to dropped.
func capOutput(b []byte, dropped int64) ([]byte, int64) {
	if len(b) <= execSyncOutputLimit {
		return b, dropped
	}
	return b[:execSyncOutputLimit], dropped + int64(len(b)-execSyncOutputLimit)
}

// timedOut tells the command's own timeout from the caller's deadline, which also surfaces
// as DeadlineExceeded but must stay an error.
func timedOut(ctx context.Context, timeout time.Duration, err error) bool {
	return timeout > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
}
