package nri

import (
	"context"
	"fmt"
	"log/slog"

	nrilog "github.com/containerd/nri/pkg/log"
)

// slogLogger routes NRI's own logging (otherwise logrus on stderr) into the agent's log.
type slogLogger struct{ l *slog.Logger }

// setLogger installs l as NRI's logger. NRI keeps one logger per process.
func setLogger(l *slog.Logger) { nrilog.Set(slogLogger{l.With("component", "nri")}) }

func (s slogLogger) Debugf(ctx context.Context, f string, a ...any) {
	s.l.DebugContext(ctx, fmt.Sprintf(f, a...))
}
func (s slogLogger) Infof(ctx context.Context, f string, a ...any) {
	// NRI's info messages are per-plugin chatter; keep them at debug.
	s.l.DebugContext(ctx, fmt.Sprintf(f, a...))
}
func (s slogLogger) Warnf(ctx context.Context, f string, a ...any) {
	s.l.WarnContext(ctx, fmt.Sprintf(f, a...))
}
func (s slogLogger) Errorf(ctx context.Context, f string, a ...any) {
	s.l.ErrorContext(ctx, fmt.Sprintf(f, a...))
}
