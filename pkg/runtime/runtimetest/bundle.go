// Package runtimetest builds OCI bundles for tests that run real containers:
// a rootfs made of the host's busybox and its libraries, and a minimal spec.
package runtimetest

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// Busybox is where the host's busybox lives (Debian's package, dynamic).
const Busybox = "/bin/busybox"

// Require skips the test unless it runs as root with busybox present.
func Require(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	if _, err := os.Stat(Busybox); err != nil {
		t.Skip("needs " + Busybox)
	}
}

// Rootfs builds a rootfs holding busybox, the libraries ldd lists for it and
// applet symlinks, under a test temp dir.
func Rootfs(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "rootfs")
	for _, d := range []string{"bin", "proc", "dev", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, Busybox, filepath.Join(root, "bin/busybox"))
	for _, lib := range libraries(t, Busybox) {
		copyFile(t, lib, filepath.Join(root, lib))
	}
	for _, applet := range []string{"sh", "echo", "sleep", "cat", "id", "kill", "head", "tail", "true", "false", "ls", "ps", "stty", "pwd"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", applet)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// libraries lists the dynamic loader and the shared libraries bin needs,
// transitively, read from the ELF headers. Not ldd: a child process of a
// test can be reaped by a Manager's reaper running in the same process.
func libraries(t *testing.T, bin string) []string {
	t.Helper()
	var libs []string
	seen := map[string]bool{}
	queue := []string{bin}
	for len(queue) > 0 {
		f, err := elf.Open(queue[0])
		if err != nil {
			t.Fatalf("read %s: %v", queue[0], err)
		}
		queue = queue[1:]
		needed, err := f.ImportedLibraries()
		if err != nil {
			f.Close()
			t.Fatalf("libraries of %s: %v", bin, err)
		}
		var paths []string
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				b := make([]byte, prog.Filesz)
				if _, err := prog.ReadAt(b, 0); err == nil {
					paths = append(paths, strings.TrimRight(string(b), "\x00"))
				}
			}
		}
		f.Close()
		for _, name := range needed {
			p, err := findLibrary(name)
			if err != nil {
				t.Fatalf("library %s of %s: %v", name, bin, err)
			}
			paths = append(paths, p)
		}
		for _, p := range paths {
			if !seen[p] {
				seen[p] = true
				libs = append(libs, p)
				queue = append(queue, p)
			}
		}
	}
	return libs
}

// findLibrary looks a shared library up in the usual Debian directories.
func findLibrary(name string) (string, error) {
	for _, dir := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib/aarch64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/lib64", "/lib", "/usr/lib"} {
		p := filepath.Join(dir, name)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", os.ErrNotExist
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, data, st.Mode().Perm()); err != nil {
		t.Fatal(err)
	}
}

// Spec is a minimal spec: new mount/pid/ipc/uts/net namespaces, proc and
// /dev mounts, default capabilities, cgroup at cgroupPath.
func Spec(args []string, cgroupPath string) *specs.Spec {
	caps := []string{"CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL",
		"CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT"}
	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: "rootfs"},
		Process: &specs.Process{
			Args: args,
			Env:  []string{"PATH=/bin"},
			Cwd:  "/",
			Capabilities: &specs.LinuxCapabilities{
				Bounding: caps, Effective: caps, Permitted: caps,
			},
			NoNewPrivileges: true,
		},
		Hostname: "test",
		Mounts: []specs.Mount{
			{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
			{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
			{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"}},
			{Destination: "/dev/shm", Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		},
		Linux: &specs.Linux{
			CgroupsPath: cgroupPath,
			Namespaces: []specs.LinuxNamespace{
				{Type: specs.PIDNamespace}, {Type: specs.IPCNamespace}, {Type: specs.UTSNamespace},
				{Type: specs.MountNamespace}, {Type: specs.NetworkNamespace},
			},
			Resources: &specs.LinuxResources{
				Devices: []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}},
			},
			MaskedPaths:   []string{"/proc/kcore"},
			ReadonlyPaths: []string{"/proc/sys"},
		},
	}
}

// Bundle writes spec into a new bundle dir next to a fresh busybox rootfs.
func Bundle(t *testing.T, spec *specs.Spec) string {
	t.Helper()
	rootfs := Rootfs(t)
	bundle := filepath.Dir(rootfs)
	data, err := json.Marshal(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	return bundle
}

// CgroupPath returns a unique cgroup path for a test and removes it (in every
// hierarchy) when the test ends. A test's container may still hold it then (its manager's
// cleanup, registered earlier, runs later): RemoveCgroupRoot, from TestMain, removes what
// is left once every test is done.
func CgroupPath(t *testing.T, name string) string {
	t.Helper()
	path := CgroupRoot + "/" + name
	t.Cleanup(func() {
		for _, dir := range CgroupDirs(t, path) {
			_ = unix.Rmdir(dir)
		}
	})
	return path
}

// CgroupRoot holds this test process's cgroups: one per process, because go test runs
// packages in parallel and one package's RemoveCgroupRoot must not meet another's tests.
var CgroupRoot = fmt.Sprintf("/berth-test-%d", os.Getpid())

// RemoveCgroupRoot removes the tests' cgroups, deepest first, after the package's tests
// ran (TestMain). What cannot be removed holds a process: a leak the leak check reports.
func RemoveCgroupRoot() error {
	mounts, err := cgroups.GetCgroupMounts(true)
	if err != nil {
		return err
	}
	roots := []string{"/sys/fs/cgroup/unified" + CgroupRoot}
	for _, m := range mounts {
		roots = append(roots, filepath.Join(m.Mountpoint, CgroupRoot))
	}
	var errs []error
	for _, root := range roots {
		var dirs []string
		_ = filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, path)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if err := unix.Rmdir(dirs[i]); err != nil && !errors.Is(err, fs.ErrNotExist) {
				errs = append(errs, fmt.Errorf("remove %s: %w", dirs[i], err))
			}
		}
	}
	return errors.Join(errs...)
}

// CgroupDirs lists path's directory in every cgroup v1 hierarchy.
func CgroupDirs(t *testing.T, path string) []string {
	t.Helper()
	mounts, err := cgroups.GetCgroupMounts(true)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, m := range mounts {
		dirs = append(dirs, filepath.Join(m.Mountpoint, path))
	}
	// On a hybrid node libcontainer also creates the cgroup in the unified
	// hierarchy, which GetCgroupMounts does not list.
	if unified := "/sys/fs/cgroup/unified"; Exists(filepath.Join(unified, "cgroup.controllers")) {
		dirs = append(dirs, filepath.Join(unified, path))
	}
	return dirs
}

// Exists reports whether path exists.
func Exists(path string) bool {
	_, err := os.Stat(path)
	return !errors.Is(err, os.ErrNotExist)
}

// Alive reports whether pid exists (zombies count as gone).
func Alive(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(data, ')')
	return i >= 0 && len(data) > i+2 && data[i+2] != 'Z'
}
