package shim

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
)

// allClasses is every errdefs class, and the context errors that travel the same way.
var allClasses = []error{
	errdefs.ErrUnknown, errdefs.ErrInvalidArgument, errdefs.ErrNotFound, errdefs.ErrAlreadyExists,
	errdefs.ErrPermissionDenied, errdefs.ErrResourceExhausted, errdefs.ErrFailedPrecondition,
	errdefs.ErrConflict, errdefs.ErrNotModified, errdefs.ErrAborted, errdefs.ErrOutOfRange,
	errdefs.ErrNotImplemented, errdefs.ErrInternal, errdefs.ErrUnavailable, errdefs.ErrDataLoss,
	errdefs.ErrUnauthenticated, context.DeadlineExceeded, context.Canceled,
}

// TestErrorClassesCrossTheWire: a class raised in the shim is the same class on the client.
func TestErrorClassesCrossTheWire(t *testing.T) {
	for _, class := range allClasses {
		t.Run(class.Error(), func(t *testing.T) {
			sent := fmt.Errorf("kill %q: %w", "c1", class)
			got := fromStatus("kill c1", toStatus(sent))
			if !errors.Is(got, class) {
				t.Fatalf("%v arrived as %v (class %v)", class, got, errdefs.Resolve(got))
			}
			if r := errdefs.Resolve(got); r != class {
				t.Errorf("resolves to %v, want %v", r, class)
			}
			if want := "shim kill c1: " + sent.Error(); got.Error() != want {
				t.Errorf("text = %q, want %q", got.Error(), want)
			}
		})
	}
}

func TestFromStatusLocalErrors(t *testing.T) {
	tests := []struct {
		name string
		err  error
		is   func(error) bool
	}{
		{"dead connection", ttrpc.ErrClosed, errdefs.IsUnavailable},
		{"server closed", ttrpc.ErrServerClosed, errdefs.IsUnavailable},
		{"caller's deadline", fmt.Errorf("call: %w", context.DeadlineExceeded), func(err error) bool { return errors.Is(err, context.DeadlineExceeded) }},
		{"caller cancelled", context.Canceled, func(err error) bool { return errors.Is(err, context.Canceled) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := fromStatus("state c1", tt.err); !tt.is(got) {
				t.Errorf("got %v", got)
			}
		})
	}
	if fromStatus("x", nil) != nil || toStatus(nil) != nil {
		t.Error("nil must stay nil")
	}
}
