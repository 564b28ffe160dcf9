package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// toStatus converts an error classified with errdefs into a gRPC status error with
// errdefs' own table (errgrpc), so that every class has its code and the table cannot drift
// from the one the shim uses. This is the one place where berth's errors become codes: the
// kubelet acts on codes.NotFound (and retries on Unavailable), so the classification matters
// more than the text. An unclassified error is codes.Unknown.
//
// The status carries the code and the message only: errgrpc would add, as details, the text
// of errors wrapped inside err as they were before any redaction (image_pull.go strips
// credentials from the message); the kubelet reads neither.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	err = classifyErrno(err)
	if st, ok := status.FromError(err); ok {
		return status.Error(st.Code(), st.Message())
	}
	st, _ := status.FromError(errgrpc.ToGRPC(classOnly{msg: err.Error(), class: errdefs.Resolve(err)}))
	return status.Error(st.Code(), st.Message())
}

// classOnly is an error's message and errdefs class without the rest of its chain. errgrpc
// walks a chain for details, which toStatus drops anyway, and panics on a wrapper whose
// Unwrap returns nil, as a *net.DNSError's does: a pull from a registry whose name does not
// resolve took the agent down.
type classOnly struct {
	msg   string
	class error
}

func (c classOnly) Error() string { return c.msg }
func (c classOnly) Unwrap() error { return c.class }

// classifyErrno classes the kernel errors that mean the same whichever step met them: a full
// filesystem or an exhausted quota is ResourceExhausted whether a spec, a log directory or an
// overlay's upper layer was being written, so the kubelet sees the node's state, not Unknown.
// Errors already classified keep their class.
func classifyErrno(err error) error {
	if _, ok := status.FromError(err); ok || errdefs.Resolve(err) != errdefs.ErrUnknown {
		return err
	}
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %w", err, errdefs.ErrResourceExhausted)
	}
	return err
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
		var resp any
		err := guard(log, info.FullMethod, func() (err error) {
			resp, err = handler(ctx, req)
			return err
		})
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
		err := toStatus(guard(log, info.FullMethod, func() error { return handler(srv, ss) }))
		logCall(log, info.FullMethod, start, err)
		observeCall(r, info.FullMethod, start, err)
		return err
	}
}

// guard runs one RPC's handler and turns a panic in it into codes.Internal naming the
// method, with the stack in the log: one bad request must not kill the agent, and with it
// the kubelet's view of every pod on the node. A goroutine the handler starts is not
// covered: it must not panic.
func guard(log *slog.Logger, method string, handler func() error) (err error) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		log.Error("rpc panicked", "method", method, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		err = status.Errorf(codes.Internal, "%s: internal error (panic: %v); the stack is in berth's log", method, p)
	}()
	return handler()
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
