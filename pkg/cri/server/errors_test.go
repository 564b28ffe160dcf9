package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type alwaysReady struct{}

func (alwaysReady) Ready() bool { return true }

// unaryCall runs handler behind UnaryInterceptor, as the gRPC server would.
func unaryCall(t *testing.T, log *slog.Logger, handler grpc.UnaryHandler) (any, error) {
	t.Helper()
	info := &grpc.UnaryServerInfo{FullMethod: "/runtime.v1.RuntimeService/StopContainer"}
	return UnaryInterceptor(alwaysReady{}, log)(context.Background(), "req", info, handler)
}

func discardLog() *slog.Logger { return slog.New(slog.DiscardHandler) }

// TestErrorCodes: every errdefs class, however deeply wrapped, reaches the kubelet with its
// own code and its text intact.
func TestErrorCodes(t *testing.T) {
	tests := []struct {
		class error
		want  codes.Code
	}{
		{errdefs.ErrUnknown, codes.Unknown},
		{errdefs.ErrInvalidArgument, codes.InvalidArgument},
		{errdefs.ErrNotFound, codes.NotFound},
		{errdefs.ErrAlreadyExists, codes.AlreadyExists},
		{errdefs.ErrPermissionDenied, codes.PermissionDenied},
		{errdefs.ErrResourceExhausted, codes.ResourceExhausted},
		{errdefs.ErrFailedPrecondition, codes.FailedPrecondition},
		{errdefs.ErrConflict, codes.FailedPrecondition},
		{errdefs.ErrNotModified, codes.FailedPrecondition},
		{errdefs.ErrAborted, codes.Aborted},
		{errdefs.ErrOutOfRange, codes.OutOfRange},
		{errdefs.ErrNotImplemented, codes.Unimplemented},
		{errdefs.ErrInternal, codes.Internal},
		{errdefs.ErrUnavailable, codes.Unavailable},
		{errdefs.ErrDataLoss, codes.DataLoss},
		{errdefs.ErrUnauthenticated, codes.Unauthenticated},
		{context.DeadlineExceeded, codes.DeadlineExceeded},
		{context.Canceled, codes.Canceled},
		{errors.New("boom"), codes.Unknown},
	}
	for _, tt := range tests {
		t.Run(tt.class.Error(), func(t *testing.T) {
			err := fmt.Errorf("stop container %q: %w", "c1", fmt.Errorf("shim kill: %w", tt.class))
			_, got := unaryCall(t, discardLog(), func(context.Context, any) (any, error) { return nil, err })
			s, ok := status.FromError(got)
			if !ok || s.Code() != tt.want {
				t.Fatalf("code = %s, want %s (%v)", status.Code(got), tt.want, got)
			}
			if s.Message() != err.Error() {
				t.Errorf("message %q lost the error text %q", s.Message(), err.Error())
			}
		})
	}
	t.Run("full disk", func(t *testing.T) {
		for _, errno := range []error{syscall.ENOSPC, syscall.EDQUOT} {
			err := fmt.Errorf("create container %q: write spec: %w", "c1", &os.PathError{Op: "write", Path: "/x", Err: errno})
			_, got := unaryCall(t, discardLog(), func(context.Context, any) (any, error) { return nil, err })
			if status.Code(got) != codes.ResourceExhausted {
				t.Errorf("%v: code = %s, want ResourceExhausted", errno, status.Code(got))
			}
		}
		classified := fmt.Errorf("pull: %w: %w", syscall.ENOSPC, errdefs.ErrUnavailable)
		_, got := unaryCall(t, discardLog(), func(context.Context, any) (any, error) { return nil, classified })
		if status.Code(got) != codes.Unavailable {
			t.Errorf("an already classified error changed class: %s", status.Code(got))
		}
	})
	t.Run("unresolvable registry", func(t *testing.T) {
		// A *net.DNSError's Unwrap returns nil; behind a second %w, errgrpc's detail walk
		// used to panic on it, outside the handler's recover, and the agent exited.
		dns := &url.Error{Op: "Get", URL: "https://invalid.example/v2/", Err: &net.OpError{Op: "dial", Net: "tcp",
			Err: &net.DNSError{Err: "no such host", Name: "invalid.example", IsNotFound: true}}}
		err := fmt.Errorf("pull invalid.example/x:1: %w: %w", errdefs.ErrUnavailable, dns)
		_, got := unaryCall(t, discardLog(), func(context.Context, any) (any, error) { return nil, err })
		if s, _ := status.FromError(got); s.Code() != codes.Unavailable || s.Message() != err.Error() {
			t.Errorf("got %v, want Unavailable with the error's text", got)
		}
	})
	t.Run("status kept", func(t *testing.T) {
		_, got := unaryCall(t, discardLog(), func(context.Context, any) (any, error) { return nil, status.Error(codes.Aborted, "x") })
		if status.Code(got) != codes.Aborted {
			t.Errorf("code = %s", status.Code(got))
		}
	})
	t.Run("success", func(t *testing.T) {
		resp, err := unaryCall(t, discardLog(), func(context.Context, any) (any, error) { return "ok", nil })
		if err != nil || resp != "ok" {
			t.Errorf("resp %v, err %v", resp, err)
		}
	})
}

// TestPanicIsInternal: a panicking handler answers Internal naming the method, logs its
// stack, and the next call is served as usual.
func TestPanicIsInternal(t *testing.T) {
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))
	check := func(t *testing.T, err error, method string) {
		t.Helper()
		if status.Code(err) != codes.Internal || !strings.Contains(err.Error(), method) || !strings.Contains(err.Error(), "nil map") {
			t.Errorf("err = %v, want Internal naming %s and the panic", err, method)
		}
		if !strings.Contains(logged.String(), "rpc panicked") || !strings.Contains(logged.String(), "TestPanicIsInternal") {
			t.Errorf("log has no stack:\n%s", logged.String())
		}
		logged.Reset()
	}
	boom := func() { var m map[string]int; m["x"]++ }

	t.Run("unary", func(t *testing.T) {
		_, err := unaryCall(t, log, func(context.Context, any) (any, error) { boom(); return nil, nil })
		check(t, err, "StopContainer")
		if _, err := unaryCall(t, log, func(context.Context, any) (any, error) { return "ok", nil }); err != nil {
			t.Errorf("next call: %v", err)
		}
	})
	t.Run("stream", func(t *testing.T) {
		info := &grpc.StreamServerInfo{FullMethod: "/runtime.v1.RuntimeService/GetContainerEvents", IsServerStream: true}
		err := StreamInterceptor(alwaysReady{}, log)(nil, nil, info, func(any, grpc.ServerStream) error { boom(); return nil })
		check(t, err, "GetContainerEvents")
	})
}
