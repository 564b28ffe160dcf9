package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
)

// TestClassify: a registry that cannot be reached is Unavailable, but a local write that
// failed during the pull (a full disk) keeps its own class: syscall errnos satisfy net.Error,
// which must not make them the registry's fault.
func TestClassify(t *testing.T) {
	h := Host{Host: "127.0.0.1:5000"}
	full := fmt.Errorf("unpack layer: %w: %w", &fs.PathError{Op: "write", Path: "/x", Err: syscall.ENOSPC}, errdefs.ErrResourceExhausted)
	tests := []struct {
		name string
		err  error
		is   func(error) bool
		not  func(error) bool
	}{
		{name: "connection refused", err: &net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, is: errdefs.IsUnavailable},
		{name: "disk full while writing a layer", err: full, is: errdefs.IsResourceExhausted, not: errdefs.IsUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(h, tt.err)
			if !tt.is(got) {
				t.Errorf("Classify(%v) = %v: wrong class", tt.err, got)
			}
			if tt.not != nil && tt.not(got) {
				t.Errorf("Classify(%v) = %v: classified as unavailable", tt.err, got)
			}
			if !errors.Is(got, tt.err) {
				t.Errorf("Classify lost the cause %v", tt.err)
			}
		})
	}
}
