package spec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// HostDevices looks device nodes up in the host's filesystem.
type HostDevices struct{}

// skipDevDir reports the /dev subdirectories that hold per-mount or pseudo entries a container
// gets its own of.
func skipDevDir(name string) bool {
	switch name {
	case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
		return true
	}
	return false
}

// LookupDevices implements DeviceLookup. The top path may be a symlink (/dev/disk/by-id/...);
// below a directory, symlinks and non-device files are skipped.
func (HostDevices) LookupDevices(hostPath string) ([]specs.LinuxDevice, error) {
	fi, err := os.Stat(hostPath)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("stat %s: %w", hostPath, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("stat %s: %w", hostPath, err)
	}
	if !fi.IsDir() {
		d, ok, err := deviceFromPath(hostPath, hostPath)
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("%s is not a device: %w", hostPath, errdefs.ErrInvalidArgument)
		}
		return []specs.LinuxDevice{d}, nil
	}
	var devs []specs.LinuxDevice
	err = filepath.WalkDir(hostPath, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			// Entries vanish under /dev all the time; a partial list is what the kernel had.
			if errors.Is(err, os.ErrNotExist) {
				return nil
			}
			return err
		}
		if e.IsDir() {
			if p != hostPath && skipDevDir(e.Name()) {
				return filepath.SkipDir
			}
			return nil
		}
		if e.Type()&(fs.ModeDevice|fs.ModeCharDevice) == 0 || e.Name() == "console" {
			return nil
		}
		d, ok, err := deviceFromPath(p, p)
		if err != nil || !ok {
			return err
		}
		devs = append(devs, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("walk %s: %w", hostPath, err)
	}
	return devs, nil
}

func deviceFromPath(statPath, name string) (specs.LinuxDevice, bool, error) {
	var st unix.Stat_t
	if err := unix.Stat(statPath, &st); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return specs.LinuxDevice{}, false, nil
		}
		return specs.LinuxDevice{}, false, fmt.Errorf("stat %s: %w", statPath, err)
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, false, nil
	}
	mode := os.FileMode(st.Mode &^ unix.S_IFMT)
	return specs.LinuxDevice{
		Path:     name,
		Type:     typ,
		Major:    int64(unix.Major(uint64(st.Rdev))),
		Minor:    int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode,
		UID:      ptr(st.Uid),
		GID:      ptr(st.Gid),
	}, true, nil
}
