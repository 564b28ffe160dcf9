package server

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

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
	res, err := cl.ExecSync(ctx, c.ID(), req.GetCmd(), timeout)
	if err != nil && timedOut(ctx, timeout, err) {
		code := res.ExitCode
		if code == 0 {
			code = execTimeoutExitCode
		}
		note := fmt.Sprintf("berth: command timed out after %s and was killed\n", timeout)
		return &runtimeapi.ExecSyncResponse{Stdout: res.Stdout, Stderr: append(res.Stderr, note...), ExitCode: code}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("exec sync in container %s: %w", c.ID(), err)
	}
	return &runtimeapi.ExecSyncResponse{Stdout: res.Stdout, Stderr: res.Stderr, ExitCode: res.ExitCode}, nil
}

// timedOut tells the command's own timeout from the caller's deadline, which also surfaces
// as DeadlineExceeded but must stay an error.
func timedOut(ctx context.Context, timeout time.Duration, err error) bool {
	return timeout > 0 && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded)
}
