package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// CheckpointSupport says whether this node can checkpoint and restore containers, decided
// once at startup by `criu check`: CRIU needs kernel features (and knows the kernel's vDSO
// layout) that vary per node, and a checkpoint that can only fail half way is worse than a
// clear refusal up front.
type CheckpointSupport struct {
	Available bool
	// Reason is why not, when not available; it is the error CheckpointContainer and a
	// restore answer with (Unimplemented).
	Reason string
}

// criuCheckTimeout bounds the startup probe.
const criuCheckTimeout = 20 * time.Second

// checkpointProbe holds `criu check`'s verdict, decided once per agent start. The check runs
// beside startup, not before serving: it can take up to its timeout (it resolves addresses,
// and on a node whose resolver does not answer it waits for it), and a restarted agent must
// answer the kubelet at once. Only checkpoint and restore wait for the verdict.
type checkpointProbe struct {
	done chan struct{}
	res  CheckpointSupport
}

// knownCheckpoint is a probe whose verdict is given (tests, and callers that decided it).
func knownCheckpoint(c CheckpointSupport) *checkpointProbe {
	p := &checkpointProbe{done: make(chan struct{}), res: c}
	close(p.done)
	return p
}

// startCheckpointProbe runs `criu check` in the background; closing stop ends it early
// (its verdict is then that the agent stopped).
func startCheckpointProbe(log *slog.Logger, stop <-chan struct{}) *checkpointProbe {
	p := &checkpointProbe{done: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), criuCheckTimeout)
	go func() {
		defer cancel()
		select {
		case <-stop:
		case <-ctx.Done():
		}
	}()
	go func() {
		defer close(p.done)
		defer cancel()
		p.res = probeCheckpoint(ctx, log)
	}()
	return p
}

// wait returns the verdict once the check has ended, or ctx's error first.
func (p *checkpointProbe) wait(ctx context.Context) (CheckpointSupport, error) {
	select {
	case <-p.done:
		return p.res, nil
	case <-ctx.Done():
		return CheckpointSupport{}, fmt.Errorf("wait for `criu check`: %w", ctx.Err())
	}
}

// probeCheckpoint runs `criu check` once, within ctx.
func probeCheckpoint(ctx context.Context, log *slog.Logger) CheckpointSupport {
	path, err := exec.LookPath("criu")
	if err != nil {
		return logCheckpoint(log, CheckpointSupport{Reason: "criu is not installed (hack/deps.sh installs it)"})
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, path, "check")
	// A child of criu's still holding the output pipe must not outlast the timeout.
	cmd.WaitDelay = time.Second
	out, err := cmd.CombinedOutput()
	if err != nil {
		return logCheckpoint(log, CheckpointSupport{Reason: fmt.Sprintf("`criu check` failed on this kernel after %s (%v): %s",
			time.Since(start).Round(time.Millisecond), err, criuCheckErrors(out))})
	}
	return logCheckpoint(log, CheckpointSupport{Available: true})
}

// criuCheckErrors keeps the first error lines of criu check's output for the reason.
func criuCheckErrors(out []byte) string {
	var lines []string
	for _, l := range bytes.Split(out, []byte("\n")) {
		if t := strings.TrimSpace(string(l)); t != "" && len(lines) < 3 {
			lines = append(lines, t)
		}
	}
	return strings.Join(lines, "; ")
}

func logCheckpoint(log *slog.Logger, c CheckpointSupport) CheckpointSupport {
	if c.Available {
		log.Info("checkpoint/restore available (criu check passed)")
	} else {
		log.Warn("checkpoint/restore unavailable", "reason", c.Reason)
	}
	return c
}

// checkpointAllowed is the error for a checkpoint or restore on a node that cannot; it waits
// for the startup probe's verdict if that is not in yet.
func (s *Service) checkpointAllowed(ctx context.Context) error {
	c, err := s.checkpoint.wait(ctx)
	if err != nil {
		return err
	}
	if c.Available {
		return nil
	}
	return fmt.Errorf("checkpoint/restore unavailable on this node: %s: %w", c.Reason, errdefs.ErrNotImplemented)
}
