package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus converts an error classified with errdefs into a gRPC status error.
// This is the one place where berth's errors become codes: the kubelet acts on
// codes.NotFound (and retries on Unavailable), so the classification matters more than the text.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	return status.Error(codeOf(err), err.Error())
}

func codeOf(err error) codes.Code {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return codes.DeadlineExceeded
	case errors.Is(err, context.Canceled):
		return codes.Canceled
	case errdefs.IsNotFound(err):
		return codes.NotFound
	case errdefs.IsInvalidArgument(err):
		return codes.InvalidArgument
	case errdefs.IsAlreadyExists(err):
		return codes.AlreadyExists
	case errdefs.IsFailedPrecondition(err), errdefs.IsConflict(err):
		return codes.FailedPrecondition
	case errdefs.IsUnavailable(err):
		return codes.Unavailable
	case errdefs.IsNotImplemented(err):
		return codes.Unimplemented
	case errdefs.IsUnauthorized(err):
		return codes.Unauthenticated
	case errdefs.IsPermissionDenied(err):
		return codes.PermissionDenied
	case errdefs.IsResourceExhausted(err):
		return codes.ResourceExhausted
	case errdefs.IsOutOfRange(err):
		return codes.OutOfRange
	case errdefs.IsAborted(err):
		return codes.Aborted
	case errdefs.IsDeadlineExceeded(err):
		return codes.DeadlineExceeded
	case errdefs.IsCanceled(err):
		return codes.Canceled
	default:
		return codes.Unknown
	}
}

// readiness reports whether startup recovery has finished; until it has, every
// RPC answers Unavailable so that no caller sees a half-restored state.
type readiness interface{ Ready() bool }

// UnaryInterceptor maps errors to codes, refuses calls before recovery has
// finished, and logs each call's outcome.
func UnaryInterceptor(r readiness, log *slog.Logger) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		if !r.Ready() {
			return nil, status.Errorf(codes.Unavailable, "%s: berth is recovering its state after a restart", info.FullMethod)
		}
		start := time.Now()
		resp, err := handler(ctx, req)
		err = toStatus(err)
		logCall(log, info.FullMethod, start, err)
		observeCall(r, info.FullMethod, start, err)
		return resp, err
	}
}

// StreamInterceptor is UnaryInterceptor for server-streaming RPCs.
func StreamInterceptor(r readiness, log *slog.Logger) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if !r.Ready() {
			return status.Errorf(codes.Unavailable, "%s: berth is recovering its state after a restart", info.FullMethod)
		}
		start := time.Now()
		err := toStatus(handler(srv, ss))
		logCall(log, info.FullMethod, start, err)
		observeCall(r, info.FullMethod, start, err)
		return err
	}
}

// rpcObserver records per-RPC metrics; the Service is one (metrics_prom.go).
type rpcObserver interface {
	observeRPC(method string, code codes.Code, d time.Duration)
}

func observeCall(r readiness, method string, start time.Time, err error) {
	if o, ok := r.(rpcObserver); ok {
		o.observeRPC(method, status.Code(err), time.Since(start))
	}
}

func logCall(log *slog.Logger, method string, start time.Time, err error) {
	if err == nil {
		log.Debug("rpc", "method", method, "duration", time.Since(start))
		return
	}
	code := status.Code(err)
	level := slog.LevelWarn
	if code == codes.NotFound || code == codes.Unimplemented {
		level = slog.LevelDebug
	}
	log.Log(context.Background(), level, "rpc failed", "method", method, "code", code.String(), "duration", time.Since(start), "err", err)
}
