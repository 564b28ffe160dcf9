package remote

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"

	"github.com/containerd/errdefs"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// Classify wraps a registry error with the errdefs class the CRI layer maps to a gRPC
// code, naming the host that answered.
func Classify(h Host, err error) error {
	if err == nil {
		return nil
	}
	if class := classOf(err); class != nil {
		return fmt.Errorf("registry %s: %w: %w", h, class, err)
	}
	return fmt.Errorf("registry %s: %w", h, err)
}

func classOf(err error) error {
	var terr *transport.Error
	if errors.As(err, &terr) {
		for _, d := range terr.Errors {
			switch d.Code {
			case transport.UnauthorizedErrorCode:
				return errdefs.ErrUnauthenticated
			case transport.DeniedErrorCode:
				return errdefs.ErrPermissionDenied
			case transport.ManifestUnknownErrorCode, transport.NameUnknownErrorCode, transport.BlobUnknownErrorCode:
				return errdefs.ErrNotFound
			case transport.TooManyRequestsErrorCode, transport.UnavailableErrorCode:
				return errdefs.ErrUnavailable
			}
		}
		switch {
		case terr.StatusCode == http.StatusUnauthorized:
			return errdefs.ErrUnauthenticated
		case terr.StatusCode == http.StatusForbidden:
			return errdefs.ErrPermissionDenied
		case terr.StatusCode == http.StatusNotFound:
			return errdefs.ErrNotFound
		case terr.StatusCode == http.StatusTooManyRequests || terr.StatusCode >= 500:
			return errdefs.ErrUnavailable
		}
		return nil
	}
	// A local file operation that failed mid-pull (a full disk) is not the registry's fault;
	// checked first because syscall.Errno satisfies net.Error.
	var perr *fs.PathError
	if errors.As(err, &perr) {
		return nil
	}
	var nerr net.Error
	var operr *net.OpError
	if errors.As(err, &operr) || errors.As(err, &nerr) {
		return errdefs.ErrUnavailable
	}
	return nil
}
