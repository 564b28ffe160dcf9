package netns

import (
	"fmt"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Kind names a namespace type as it appears under /proc/<pid>/ns.
type Kind string

const (
	KindNet Kind = "net"
	KindIPC Kind = "ipc"
	KindUTS Kind = "uts"
	// KindUser can be created and pinned, not entered with DoNS: a multi-threaded process
	// cannot join a user namespace.
	KindUser Kind = "user"
)

// cloneFlag is the unshare(2)/setns(2) flag for the kind.
func (k Kind) cloneFlag() (int, error) {
	switch k {
	case KindNet:
		return unix.CLONE_NEWNET, nil
	case KindIPC:
		return unix.CLONE_NEWIPC, nil
	case KindUTS:
		return unix.CLONE_NEWUTS, nil
	case KindUser:
		return unix.CLONE_NEWUSER, nil
	}
	return 0, fmt.Errorf("unsupported namespace kind %q: %w", string(k), errdefs.ErrInvalidArgument)
}
