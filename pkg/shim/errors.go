package shim

import (
	"errors"
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/containerd/ttrpc"
	"google.golang.org/grpc/status"
)

// Errors cross the wire as gRPC status codes (ttrpc transports status errors), converted
// both ways by errdefs' own table (errgrpc), the same one the CRI server answers the kubelet
// with: a class the shim raises reaches the kubelet with the code it stands for.

// toStatus turns a backend error into a status error with the code of its errdefs class and
// its text. errgrpc would also attach each error wrapped in err as a detail, which ToNative
// joins back on as extra lines repeating the message; the class and the text are all the
// agent uses.
func toStatus(err error) error {
	if err == nil {
		return nil
	}
	st, _ := status.FromError(errgrpc.ToGRPC(err))
	return status.Error(st.Code(), st.Message())
}

// fromStatus turns an error from the wire back into an errdefs-classified one. A dead
// connection is errdefs.ErrUnavailable; any other error that is not a status (the caller's
// context ending, a dial failure) keeps its own chain, so that context.DeadlineExceeded and
// context.Canceled still match.
func fromStatus(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, ttrpc.ErrClosed) || errors.Is(err, ttrpc.ErrServerClosed) {
		return fmt.Errorf("shim %s: %w: %w", op, err, errdefs.ErrUnavailable)
	}
	if _, ok := status.FromError(err); !ok {
		return fmt.Errorf("shim %s: %w", op, err)
	}
	return fmt.Errorf("shim %s: %w", op, errgrpc.ToNative(err))
}
