package shim

import (
	"context"
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// errdefs classes carried across the wire as gRPC codes (ttrpc transports
// status errors), so both ends agree on what an error means.
var codeClasses = []struct {
	code  codes.Code
	class error
}{
	{codes.NotFound, errdefs.ErrNotFound},
	{codes.AlreadyExists, errdefs.ErrAlreadyExists},
	{codes.InvalidArgument, errdefs.ErrInvalidArgument},
	{codes.FailedPrecondition, errdefs.ErrFailedPrecondition},
	{codes.Unavailable, errdefs.ErrUnavailable},
	{codes.Unimplemented, errdefs.ErrNotImplemented},
	{codes.PermissionDenied, errdefs.ErrPermissionDenied},
	{codes.ResourceExhausted, errdefs.ErrResourceExhausted},
	{codes.DeadlineExceeded, context.DeadlineExceeded},
	{codes.Canceled, context.Canceled},
}

// toStatus turns a backend error into a status error with the matching code.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	for _, cc := range codeClasses {
		if errors.Is(err, cc.class) {
			return status.Error(cc.code, err.Error())
		}
	}
	return status.Error(codes.Unknown, err.Error())
}

// fromStatus turns an error from the wire back into an errdefs-classified
// one; a dead connection is errdefs.ErrUnavailable.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, ttrpc.ErrServerClosed) {
		return fmt.Errorf("shim %s: %w: %w", op, err, errdefs.ErrUnavailable)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("shim %s: %w", op, err)
	}
	for _, cc := range codeClasses {
		if st.Code() == cc.code {
			return fmt.Errorf("shim %s: %s: %w", op, st.Message(), cc.class)
		}
	}
	return fmt.Errorf("shim %s: %s", op, st.Message())
}
