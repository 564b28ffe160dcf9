package netns

import (
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// Do runs fn inside the network namespace pinned at path. See DoNS.
func Do(path string, fn func() error) error {
	return DoNS(KindNet, path, fn)
}

// DoNS runs fn on a locked OS thread switched into the namespace of the given kind at path,
// and switches the thread back afterwards. fn must not start goroutines that expect to be in
// the namespace: they run on other threads. A missing path is errdefs.ErrNotFound; a file
// that is not a namespace of that kind is errdefs.ErrInvalidArgument.
func DoNS(kind Kind, path string, fn func() error) error {
	if kind == KindUser {
		return fmt.Errorf("enter user namespace %s: a multi-threaded process cannot: %w", path, errdefs.ErrNotImplemented)
	}
	flag, err := kind.cloneFlag()
	if err != nil {
		return fmt.Errorf("enter namespace %s: %w", path, err)
	}
	target, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("enter %s namespace %s: %w", kind, path, errdefs.ErrNotFound)
		}
		return fmt.Errorf("enter %s namespace: %w", kind, err)
	}
	defer target.Close()

	// A separate thread, so the caller's thread never changes namespace.
	onThread(func() bool {
		var reusable bool
		reusable, err = doOnThread(kind, flag, int(target.Fd()), fn)
		return reusable
	})
	if err != nil {
		return fmt.Errorf("in %s namespace %s: %w", kind, path, err)
	}
	return nil
}

// doOnThread runs on a locked thread; it reports whether the thread is back in its original
// namespace and may be reused.
func doOnThread(kind Kind, flag, target int, fn func() error) (reusable bool, err error) {
	orig, err := os.Open(fmt.Sprintf("/proc/thread-self/ns/%s", kind))
	if err != nil {
		return true, fmt.Errorf("open current namespace: %w", err)
	}
	defer orig.Close()
	if err := unix.Setns(target, flag); err != nil {
		// setns failed, so the thread is unchanged.
		if errors.Is(err, unix.EINVAL) {
			return true, fmt.Errorf("setns: not a %s namespace: %w", kind, errdefs.ErrInvalidArgument)
		}
		return true, fmt.Errorf("setns: %w", err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), flag); err != nil {
		// The thread must die rather than run other goroutines inside the pod's namespace.
		return false, errors.Join(fnErr, fmt.Errorf("restore %s namespace: %w", kind, err))
	}
	return true, fnErr
}
