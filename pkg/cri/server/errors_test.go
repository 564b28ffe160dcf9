package server

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestToStatus(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want codes.Code
	}{
		{"wrapped not found", fmt.Errorf("image %q: %w", "busybox", errdefs.ErrNotFound), codes.NotFound},
		{"invalid argument", fmt.Errorf("parse: %w", errdefs.ErrInvalidArgument), codes.InvalidArgument},
		{"already exists", fmt.Errorf("name: %w", errdefs.ErrAlreadyExists), codes.AlreadyExists},
		{"failed precondition", fmt.Errorf("exec: %w", errdefs.ErrFailedPrecondition), codes.FailedPrecondition},
		{"deadline", fmt.Errorf("pull: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{"unclassified", errors.New("boom"), codes.Unknown},
		{"status kept", status.Error(codes.Aborted, "x"), codes.Aborted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := toStatus(tt.err)
			if status.Code(got) != tt.want {
				t.Fatalf("code = %s, want %s", status.Code(got), tt.want)
			}
			if s, _ := status.FromError(got); s.Message() != tt.err.Error() && tt.name != "status kept" {
				t.Errorf("message %q lost the error text %q", s.Message(), tt.err.Error())
			}
		})
	}
	if toStatus(nil) != nil {
		t.Error("nil error must stay nil")
	}
}
