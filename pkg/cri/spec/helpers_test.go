package spec

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// wantErr checks err against a wanted classification (nil = success).
func wantErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != nil && err == nil:
		t.Fatalf("expected %v, got success", want)
	case want != nil && !errors.Is(err, want):
		t.Fatalf("expected %v, got %v", want, err)
	}
}

var (
	errInvalid            = errdefs.ErrInvalidArgument
	errFailedPrecondition = errdefs.ErrFailedPrecondition
)

func dump(v any) string {
	b, _ := json.MarshalIndent(v, "", "  ")
	return string(b)
}
