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

// TestErrorClassesCrossTheWire: a class raised in the shim is the same class on the client,
// with the same text, wherever the class sits in the error's chain.
func TestErrorClassesCrossTheWire(t *testing.T) {
	cause := errors.New("no such process")
	for _, class := range allClasses {
		t.Run(class.Error(), func(t *testing.T) {
			for _, tc := range []struct {
				sent      error
				classLast bool
			}{
				{fmt.Errorf("kill %q: %w", "c1", class), true},
				{fmt.Errorf("kill %q: %w: %w", "c1", cause, class), true},
				{fmt.Errorf("kill %q: %w: %w", "c1", class, cause), false},
			} {
				got := fromStatus("kill c1", toStatus(tc.sent))
				want := class
				if !tc.classLast && (class == errdefs.ErrConflict || class == errdefs.ErrNotModified) {
					// These share FailedPrecondition's code; errgrpc tells them apart
					// only when the message ends with the class.
					want = errdefs.ErrFailedPrecondition
				}
				if r := errdefs.Resolve(got); r != want || !errors.Is(got, want) {
					t.Errorf("%q arrived as class %v, want %v", tc.sent, r, want)
				}
				// The text is the shim's, once; a class without its own message type (the
				// context errors) may be repeated at the end when it was not there already.
				text := "shim kill c1: " + tc.sent.Error()
				if got.Error() != text && (tc.classLast || got.Error() != text+": "+class.Error()) {
					t.Errorf("text = %q, want %q", got.Error(), text)
				}
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
