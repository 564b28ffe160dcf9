package server

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
)

// What CreateContainer makes on the host outside berth's own directories: missing bind-mount
// sources and the CRI log file's directory. Both are checked with the rest of the request
// first; the directories are created only once nothing else can refuse the request, and each
// one created is removed again if the create rolls back. They are not recorded in the ledger:
// a container's removal must not delete a hostPath volume it was given.

// validateMountSources checks every bind mount before anything is created.
func validateMountSources(cfg *runtimeapi.ContainerConfig) error {
	for _, m := range cfg.GetMounts() {
		if p := m.GetHostPath(); p != "" && !filepath.IsAbs(p) {
			return fmt.Errorf("mount %q: host path %q is not absolute: %w", m.GetContainerPath(), p, errdefs.ErrInvalidArgument)
		}
		if err := spec.ValidateMount(m); err != nil {
			return err
		}
	}
	return nil
}

// containerLogPath checks the container's log path (CRI: relative to the pod's log directory;
// the kubelet sends "<container>/<restart>.log") and returns it cleaned. An absolute path or
// one that climbs out of the directory is refused: the shim opens the file as root.
func containerLogPath(logDir, logPath string) (string, error) {
	if logDir == "" || logPath == "" {
		return "", nil
	}
	rel := filepath.Clean(logPath)
	if filepath.IsAbs(logPath) || !filepath.IsLocal(rel) || rel == "." {
		return "", fmt.Errorf("log path %q must be a file below the pod's log directory %q: %w", logPath, logDir, errdefs.ErrInvalidArgument)
	}
	return rel, nil
}

// createHostPaths creates missing bind-mount sources as directories, as Docker and containerd
// do, and the log file's directory; it returns the log file's resolved path ("" = no log).
func (s *Service) createHostPaths(cfg *runtimeapi.ContainerConfig, plan createPlan, cl *cleanups) (logPath string, err error) {
	for _, m := range cfg.GetMounts() {
		if p := m.GetHostPath(); p != "" {
			if err := mkdirAllUndo(p, cl); err != nil {
				return "", fmt.Errorf("create mount source %s: %w", p, err)
			}
		}
	}
	if plan.logRel == "" {
		return "", nil
	}
	return prepareLogFile(plan.logDir, plan.logRel, cl)
}

// mkdirAllUndo creates p and its missing parents, pushing the removal of each directory it
// made onto cl (run newest first, so children go before parents).
func mkdirAllUndo(p string, cl *cleanups) error {
	var missing []string
	for d := filepath.Clean(p); ; d = filepath.Dir(d) {
		if _, err := os.Lstat(d); err == nil {
			break
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		missing = append(missing, d)
		if d == filepath.Dir(d) {
			break
		}
	}
	for i := len(missing) - 1; i >= 0; i-- {
		d := missing[i]
		if err := os.Mkdir(d, 0o755); err != nil {
			if errors.Is(err, os.ErrExist) {
				continue // made by someone else meanwhile: not ours to remove
			}
			return err
		}
		pushRemoveDir(cl, d)
	}
	return nil
}

// pushRemoveDir undoes the creation of directory d. os.Remove only takes an empty directory:
// nothing someone else put there meanwhile is lost.
func pushRemoveDir(cl *cleanups, d string) {
	cl.push("remove created directory "+d, func(context.Context) error {
		if err := os.Remove(d); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		return nil
	})
}

// prepareLogFile creates the log file's directories below the pod's log directory and returns
// the file's path with every symlink resolved. Below the log directory no symlink is accepted:
// the directory may be writable by a container (a hostPath volume of /var/log), and a planted
// "c.log -> /etc/shadow" or "name -> /etc" would make the root shim write outside it. The shim
// opens the returned path without following any symlink, so one planted later fails the open.
func prepareLogFile(logDir, rel string, cl *cleanups) (string, error) {
	// The log directory itself is the kubelet's (trusted); it may lie behind a symlink.
	if err := mkdirAllUndo(logDir, cl); err != nil {
		return "", fmt.Errorf("create log directory %s: %w", logDir, err)
	}
	root, err := filepath.EvalSymlinks(logDir)
	if err != nil {
		return "", fmt.Errorf("resolve log directory %s: %w", logDir, err)
	}
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("open log directory %s: %w", root, err)
	}
	defer func() { unix.Close(fd) }()
	parts := strings.Split(rel, string(filepath.Separator))
	done := root
	for _, name := range parts[:len(parts)-1] {
		next, err := openDirNoFollow(fd, name, done, cl)
		if err != nil {
			return "", fmt.Errorf("log path %q: %w", rel, err)
		}
		unix.Close(fd)
		fd, done = next, filepath.Join(done, name)
	}
	base := parts[len(parts)-1]
	var st unix.Stat_t
	err = unix.Fstatat(fd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	switch {
	case errors.Is(err, unix.ENOENT):
	case err != nil:
		return "", fmt.Errorf("log path %q: stat %s: %w", rel, filepath.Join(done, base), err)
	case st.Mode&unix.S_IFMT != unix.S_IFREG:
		return "", fmt.Errorf("log path %q: %s exists and is not a regular file: %w", rel, filepath.Join(done, base), errdefs.ErrInvalidArgument)
	}
	return filepath.Join(done, base), nil
}

// openDirNoFollow opens (creating it if missing) the directory name under dirfd, refusing a
// symlink in its place.
func openDirNoFollow(dirfd int, name, parent string, cl *cleanups) (int, error) {
	path := filepath.Join(parent, name)
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC
	fd, err := unix.Openat(dirfd, name, flags, 0)
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(dirfd, name, 0o755); err != nil && !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("create %s: %w", path, err)
		} else if err == nil {
			pushRemoveDir(cl, path)
		}
		fd, err = unix.Openat(dirfd, name, flags, 0)
	}
	if errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return -1, fmt.Errorf("%s is a symlink or not a directory: %w", path, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return -1, fmt.Errorf("open %s: %w", path, err)
	}
	return fd, nil
}
