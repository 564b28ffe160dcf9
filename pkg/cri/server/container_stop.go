package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

const sigKill = syscall.SIGKILL

// killWait bounds the wait after SIGKILL; only a task stuck in the kernel outlives it.
const killWait = 10 * time.Second

// killMargin is kept from the caller's deadline for the SIGKILL: the kubelet often sets
// the RPC deadline to the grace period itself, and a stop must still kill in time.
const killMargin = 500 * time.Millisecond

// StopContainer signals the container with its stop signal, waits up to the timeout, then
// kills everything in it. A container that is gone or already stopped is success.
func (s *Service) StopContainer(ctx context.Context, req *runtimeapi.StopContainerRequest) (*runtimeapi.StopContainerResponse, error) {
	c, err := s.store.Containers.Resolve(req.GetContainerId())
	if errdefs.IsNotFound(err) {
		return &runtimeapi.StopContainerResponse{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stop container: %w", err)
	}
	if err := s.stopContainer(ctx, c, stopTimeout(req.GetTimeout())); err != nil {
		return nil, fmt.Errorf("stop container %s: %w", c.ID(), err)
	}
	return &runtimeapi.StopContainerResponse{}, nil
}

// stopTimeout turns the CRI's grace period in seconds into a duration. Seconds beyond what a
// Duration holds would wrap (math.MaxInt64 seconds becomes -1s) and skip the stop signal, so
// they saturate at the longest Duration; zero or less means no grace: kill at once.
func stopTimeout(seconds int64) time.Duration {
	switch {
	case seconds <= 0:
		return 0
	case seconds > int64(math.MaxInt64/time.Second):
		return math.MaxInt64
	}
	return time.Duration(seconds) * time.Second
}

// stopContainer is the worker behind StopContainer, StopPodSandbox and RemoveContainer.
func (s *Service) stopContainer(ctx context.Context, c *store.Container, timeout time.Duration) error {
	st := c.Status()
	if st.State == store.ContainerExited {
		return nil
	}
	md := c.Metadata()
	cl, err := s.client(md.SandboxID)
	if err != nil {
		// Without its shim nothing can run the container any more; record that so that
		// Remove can proceed.
		return s.recordExit(c, ShimState{ExitCode: 255, Message: "container's shim is gone: " + err.Error()})
	}
	timeout = graceWithin(ctx, timeout)
	// One Wait for the whole stop, started before the first signal and bounded by the longest
	// the stop can take. A Wait per phase, each with the phase's deadline, would be cut off by
	// the agent while the shim answers it, and every stop past its grace period would leave a
	// late answer on a stream the agent had closed.
	exited := waitForExit(ctx, cl, md.ID, timeout+killWait+killMargin)
	if st.State == store.ContainerRunning && timeout > 0 {
		sig := stopSignal(md)
		if err := cl.Kill(ctx, md.ID, sig, false); err != nil && !errdefs.IsNotFound(err) {
			return fmt.Errorf("signal %s: %w", sig, err)
		}
		done, err := s.awaitStop(ctx, c, exited, timeout)
		if err != nil || done {
			return err
		}
	}
	// The kill runs to its end even if the caller has given up: a container left
	// half-stopped would only be killed by the caller's retry, later.
	kctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), killWait+killMargin)
	defer cancel()
	s.kills.mark(md.ID)
	if err := cl.Kill(kctx, md.ID, sigKill, true); err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("kill: %w", err)
	}
	done, err := s.awaitStop(kctx, c, exited, killWait)
	if err != nil {
		return err
	}
	if !done {
		return fmt.Errorf("still running %s after SIGKILL: %w", killWait, errdefs.ErrUnavailable)
	}
	return nil
}

// waitResult is the answer to a shim Wait.
type waitResult struct {
	st  ShimState
	err error
}

// waitForExit asks the shim, once, to report the container's exit within d; the answer
// arrives on the channel. The call outlives the caller's cancellation (it ends at the exit
// or after d), so that its answer is always read.
func waitForExit(ctx context.Context, cl ShimClient, id string, d time.Duration) <-chan waitResult {
	ch := make(chan waitResult, 1)
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	go func() {
		defer cancel()
		st, err := cl.Wait(wctx, id)
		ch <- waitResult{st, err}
	}()
	return ch
}

// awaitStop waits up to d for the exit that waitForExit reports and records it. It reports
// false when the container is still running at the deadline. The channel is read at most
// once: a stop returns as soon as it has the answer.
func (s *Service) awaitStop(ctx context.Context, c *store.Container, exited <-chan waitResult, d time.Duration) (bool, error) {
	t := time.NewTimer(d)
	defer t.Stop()
	var r waitResult
	select {
	case r = <-exited:
	case <-t.C:
		return false, nil
	case <-ctx.Done():
		return false, fmt.Errorf("wait: %w", ctx.Err())
	}
	switch {
	case r.err == nil:
		return true, s.recordExit(c, r.st)
	case errdefs.IsNotFound(r.err):
		return true, s.recordExit(c, ShimState{ExitCode: 255, Message: "container vanished from its shim"})
	case errdefs.IsDeadlineExceeded(r.err) || errors.Is(r.err, context.DeadlineExceeded):
		// The shim's wait ran out: the stop's whole budget is spent.
		return false, nil
	}
	return false, fmt.Errorf("wait: %w", r.err)
}

// graceWithin shortens a stop's grace period so that the SIGKILL still falls
// inside the caller's deadline.
func graceWithin(ctx context.Context, timeout time.Duration) time.Duration {
	dl, ok := ctx.Deadline()
	if !ok {
		return timeout
	}
	left := time.Until(dl) - killMargin
	if left < timeout {
		return max(left, 0)
	}
	return timeout
}

// recordExit stores an exit reported by the shim; the first report wins.
func (s *Service) recordExit(c *store.Container, st ShimState) error {
	defer s.events.container(c.ID())
	st.OOMKilled = s.kills.oomKilled(c.ID(), st.OOMKilled, st.FinishedAt)
	exited := false
	err := c.Update(func(cs *store.ContainerStatus) error {
		exited = cs.State != store.ContainerExited
		cs.Exited(st.ExitCode, st.FinishedAt, st.OOMKilled, st.Message)
		return nil
	})
	if err == nil && exited {
		s.nriStopContainer(c)
	}
	return err
}

// stopSignal is the CRI's stop signal, else the image's STOPSIGNAL, else SIGTERM.
func stopSignal(md store.ContainerMetadata) syscall.Signal {
	if sig := md.Config.GetStopSignal(); sig != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		// Enum names are "SIGNAL_SIGHUP".
		if n, ok := parseSignal(strings.TrimPrefix(runtimeapi.Signal_name[int32(sig)], "SIGNAL_")); ok {
			return n
		}
	}
	if sig, ok := parseSignal(md.StopSignal); ok {
		return sig
	}
	return syscall.SIGTERM
}

// parseSignal reads an image STOPSIGNAL: "SIGTERM", "TERM" or "15".
func parseSignal(s string) (syscall.Signal, bool) {
	if s == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(s); err == nil && n > 0 && n < 65 {
		return syscall.Signal(n), true
	}
	name := strings.ToUpper(s)
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	if n := unix.SignalNum(name); n != 0 {
		return n, true
	}
	return 0, false
}

// killAndDelete removes a container from its shim whatever its state.
func killAndDelete(ctx context.Context, cl ShimClient, id string) error {
	if err := cl.Kill(ctx, id, sigKill, true); err != nil && !errdefs.IsNotFound(err) && !errdefs.IsFailedPrecondition(err) {
		return fmt.Errorf("kill %s: %w", id, err)
	}
	wctx, cancel := context.WithTimeout(ctx, killWait)
	_, err := cl.Wait(wctx, id)
	cancel()
	if err != nil && !errdefs.IsNotFound(err) {
		return fmt.Errorf("wait %s: %w", id, err)
	}
	return cl.Delete(ctx, id)
}
