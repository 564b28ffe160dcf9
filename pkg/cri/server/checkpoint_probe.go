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

// probeCheckpoint runs `criu check` once.
func probeCheckpoint(log *slog.Logger) CheckpointSupport {
	path, err := exec.LookPath("criu")
	if err != nil {
		return logCheckpoint(log, CheckpointSupport{Reason: "criu is not installed (hack/deps.sh installs it)"})
	}
	ctx, cancel := context.WithTimeout(context.Background(), criuCheckTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "check").CombinedOutput()
	if err != nil {
		return logCheckpoint(log, CheckpointSupport{Reason: fmt.Sprintf("`criu check` failed on this kernel (%v): %s", err, criuCheckErrors(out))})
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

// checkpointAllowed is the error for a checkpoint or restore on a node that cannot.
func (s *Service) checkpointAllowed() error {
	if s.checkpoint.Available {
		return nil
	}
	return fmt.Errorf("checkpoint/restore unavailable on this node: %s: %w", s.checkpoint.Reason, errdefs.ErrNotImplemented)
}
