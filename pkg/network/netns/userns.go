package netns

import (
	"errors"
	"fmt"
	"math"
	"os/exec"
	"path/filepath"
	"syscall"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// IDMap maps Size ids from ContainerID inside a user namespace to HostID outside.
type IDMap struct{ ContainerID, HostID, Size uint32 }

// UserNS asks for a new user namespace owning the other new namespaces.
type UserNS struct{ UIDs, GIDs []IDMap }

func (u *UserNS) validate() error {
	if len(u.UIDs) == 0 || len(u.GIDs) == 0 {
		return fmt.Errorf("user namespace needs uid and gid mappings: %w", errdefs.ErrInvalidArgument)
	}
	for _, m := range append(append([]IDMap(nil), u.UIDs...), u.GIDs...) {
		if m.Size == 0 || uint64(m.HostID)+uint64(m.Size) > math.MaxUint32 || uint64(m.ContainerID)+uint64(m.Size) > math.MaxUint32 {
			return fmt.Errorf("user namespace mapping %+v: %w", m, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func sysMaps(ms []IDMap) []syscall.SysProcIDMap {
	out := make([]syscall.SysProcIDMap, len(ms))
	for i, m := range ms {
		out[i] = syscall.SysProcIDMap{ContainerID: int(m.ContainerID), HostID: int(m.HostID), Size: int(m.Size)}
	}
	return out
}

// createWithUserNS makes the namespaces in a holder process, because a multi-threaded process
// cannot unshare a user namespace, and the other namespaces must be created inside it: the
// kernel checks the owner of the net and pid namespaces when a container mounts sysfs and
// proc. Go's clone writes the mappings from the parent before the holder runs. The holder's
// namespaces are pinned, then set up from a locked thread (the host's root holds every
// capability in a child user namespace), and the holder is ended.
func createWithUserNS(opts Options) (Paths, error) {
	holder, err := holderPath()
	if err != nil {
		return Paths{}, err
	}
	kinds := append([]Kind{KindUser}, opts.kinds()...)
	flags := 0
	for _, k := range kinds {
		f, err := k.cloneFlag()
		if err != nil {
			return Paths{}, err
		}
		flags |= f
	}
	cmd := exec.Command(holder)
	cmd.Args[0] = "berth-userns-holder"
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return Paths{}, err
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  uintptr(flags),
		UidMappings: sysMaps(opts.UserNS.UIDs),
		GidMappings: sysMaps(opts.UserNS.GIDs),
		// Containers must be able to set their supplementary groups: runc calls setgroups.
		GidMappingsEnableSetgroups: true,
	}
	if err := cmd.Start(); err != nil {
		return Paths{}, fmt.Errorf("start user namespace holder: %w", err)
	}
	defer func() {
		// EOF ends the holder; the kill covers a holder that is not reading yet.
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}()

	paths, err := pinAll(kinds, opts.Dir, func(k Kind) string {
		return fmt.Sprintf("/proc/%d/ns/%s", cmd.Process.Pid, k)
	})
	if err != nil {
		return Paths{}, err
	}
	if err := setupPinned(opts, paths); err != nil {
		return Paths{}, errors.Join(err, unpinAll(paths))
	}
	return paths, nil
}

// holderPath finds the holder program: cat, which blocks reading stdin until EOF. The holder
// only has to exist while its namespaces are pinned; when the agent dies its stdin closes and
// it exits, so a crash cannot leak it. (The agent binary has no mode to re-execute into.)
func holderPath() (string, error) {
	for _, c := range []string{"cat", "/usr/bin/cat", "/bin/cat"} {
		if p, err := exec.LookPath(c); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("no namespace holder program (cat) found: %w", errdefs.ErrNotFound)
}

// pinAll pins the namespace of each kind at dir/<kind>; on failure nothing stays pinned.
func pinAll(kinds []Kind, dir string, src func(Kind) string) (Paths, error) {
	var paths Paths
	for _, k := range kinds {
		dst := filepath.Join(dir, string(k))
		if err := pin(src(k), dst); err != nil {
			return Paths{}, errors.Join(fmt.Errorf("pin %s namespace: %w", k, err), unpinAll(paths))
		}
		paths.set(k, dst)
	}
	return paths, nil
}

func unpinAll(p Paths) error {
	var errs []error
	for _, path := range []string{p.Net, p.IPC, p.UTS, p.User} {
		if path != "" {
			errs = append(errs, Unpin(path))
		}
	}
	return errors.Join(errs...)
}

// setupPinned brings lo up and sets the hostname, each from a thread that joined the pinned
// namespace (the holder cannot: it runs no code of ours).
func setupPinned(opts Options, p Paths) error {
	if opts.UTS && opts.Hostname != "" {
		err := DoNS(KindUTS, p.UTS, func() error {
			if err := unix.Sethostname([]byte(opts.Hostname)); err != nil {
				return fmt.Errorf("set hostname %q: %w", opts.Hostname, err)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if opts.Net {
		return DoNS(KindNet, p.Net, loopbackUp)
	}
	return nil
}
