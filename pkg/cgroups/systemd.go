package cgroups

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	sddbus "github.com/coreos/go-systemd/v22/dbus"
	"github.com/godbus/dbus/v5"
	cg "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"golang.org/x/sys/unix"
)

// Names of the units berth asks systemd for under the systemd driver. Scope names are global
// in systemd (unlike cgroupfs directories), so each carries the id of its object.
const (
	// DefaultSlice holds the pods whose kubelet gave no cgroup parent: berth-<sandbox>.slice.
	DefaultSlice = "berth.slice"
	// ContainerScopePrefix: a container's scope is berth-<container id>.scope, in its pod's slice.
	ContainerScopePrefix = "berth"
	// PodInitScopePrefix: the pod init's scope is berth-podinit-<sandbox id>.scope, in the pod's slice.
	PodInitScopePrefix = "berth-podinit"
	// ShimScopePrefix: each shim runs in berth-shim-<sandbox id>.scope in ShimSlice, outside
	// the agent's service, so that stopping, restarting or killing the agent's unit leaves it.
	ShimScopePrefix = "berth-shim"
	// ShimSlice holds the shims' scopes (/berth.slice/berth-shims.slice).
	ShimSlice = "berth-shims.slice"
)

// unitTimeout bounds one systemd job (start or stop of a unit).
const unitTimeout = 30 * time.Second

// ScopePath is the cgroupfs path of the scope <prefix>-<name>.scope in the slice at slicePath.
func ScopePath(slicePath, prefix, name string) string {
	return path.Join(slicePath, prefix+"-"+name+".scope")
}

// RuncScopePath is the same scope in the form runc's systemd driver takes as an OCI
// cgroupsPath: "<slice>:<prefix>:<name>".
func RuncScopePath(slicePath, prefix, name string) string {
	return path.Base(slicePath) + ":" + prefix + ":" + name
}

// ShimScopePath is the cgroupfs path of a shim's scope.
func ShimScopePath(sandboxID string) string {
	slice, _ := expandSlice(ShimSlice) // a constant that expands
	return ScopePath(slice, ShimScopePrefix, sandboxID)
}

// IsUnitPath reports whether a cgroupfs path names a systemd unit's cgroup (a slice or a
// scope), which only systemd may remove.
func IsUnitPath(p string) bool {
	b := path.Base(p)
	return strings.HasSuffix(b, ".slice") || strings.HasSuffix(b, ".scope")
}

// Systemd creates and removes the slices and scopes of the systemd driver over D-Bus. Limits
// are not its job: the shims set them as unit properties through runc's systemd driver.
type Systemd struct {
	conn *sddbus.Conn
}

// ConnectSystemd connects to systemd over D-Bus and asks for its version, so that a systemd
// that does not answer fails the agent's start rather than its first pod.
func ConnectSystemd(ctx context.Context) (*Systemd, error) {
	conn, err := sddbus.NewWithContext(ctx)
	if err != nil {
		return nil, fmt.Errorf("cgroup_driver %q: systemd does not answer on D-Bus: %w", DriverSystemd, errors.Join(err, errdefs.ErrUnavailable))
	}
	if _, err := conn.GetManagerProperty("Version"); err != nil {
		conn.Close()
		return nil, fmt.Errorf("cgroup_driver %q: systemd does not answer on D-Bus: %w", DriverSystemd, errors.Join(err, errdefs.ErrUnavailable))
	}
	return &Systemd{conn: conn}, nil
}

// Close drops the D-Bus connection.
func (s *Systemd) Close() { s.conn.Close() }

// EnsureSlice makes sure the slice whose cgroupfs path is p exists, creating it as a
// transient unit with CPU, memory, IO and task accounting when it does not (a kubelet's pod
// slice already exists; berth's own is created). It is idempotent.
func (s *Systemd) EnsureSlice(p string) error {
	name, parent, err := splitSlicePath(p)
	if err != nil {
		return fmt.Errorf("create slice: %w", err)
	}
	m, err := manager.New(&cg.Cgroup{Systemd: true, Name: name, Parent: parent, Resources: &cg.Resources{}})
	if err != nil {
		return fmt.Errorf("create slice %s: %w", name, err)
	}
	// Apply(-1) starts the unit, taking an existing one as success.
	if err := m.Apply(-1); err != nil {
		return fmt.Errorf("create slice %s: %w", name, err)
	}
	return nil
}

// splitSlicePath checks that p is where systemd puts the slice its last element names, and
// returns that name and its parent slice's.
func splitSlicePath(p string) (name, parent string, err error) {
	clean, err := validatePath(p)
	if err != nil {
		return "", "", err
	}
	name = path.Base(clean)
	want, err := expandSlice(name)
	if err != nil || !isSliceName(name) || want != clean {
		return "", "", fmt.Errorf("cgroup path %q is not where systemd puts slice %q: %w", p, name, errdefs.ErrInvalidArgument)
	}
	parent = "-.slice"
	if d := path.Dir(clean); d != "/" {
		parent = path.Base(d)
	}
	return name, parent, nil
}

// RemoveUnit stops the slice or scope whose cgroupfs path is p. The processes inside are
// SIGKILLed first, through systemd, so that the stop does not wait out a container ignoring
// SIGTERM: every scope below a slice gets the kill. A unit that does not exist is not an
// error, so RemoveUnit can be retried. A cgroup systemd leaves behind (sub-cgroups a
// container made, which systemd before v240 does not remove) is removed as cgroupfs does.
func (s *Systemd) RemoveUnit(ctx context.Context, p string) error {
	clean, err := validatePath(p)
	if err != nil {
		return fmt.Errorf("remove unit: %w", err)
	}
	if !IsUnitPath(clean) {
		return fmt.Errorf("remove unit: cgroup %q is not a slice or scope: %w", p, errdefs.ErrInvalidArgument)
	}
	ctx, cancel := context.WithTimeout(ctx, unitTimeout)
	defer cancel()
	for _, scope := range scopesIn(clean) {
		if err := s.conn.KillUnitWithTarget(ctx, path.Base(scope), sddbus.All, int32(unix.SIGKILL)); err != nil && !isNoSuchUnit(err) {
			return fmt.Errorf("kill unit %s: %w", path.Base(scope), err)
		}
	}
	name := path.Base(clean)
	if err := s.stop(ctx, name); err != nil {
		return err
	}
	if dir := unitDir(clean); dirExists(dir) {
		if err := Remove(clean); err != nil {
			return fmt.Errorf("remove what unit %s left: %w", name, err)
		}
	}
	return nil
}

// stop stops a unit and waits for the job; a failed unit is reset so that systemd forgets it.
func (s *Systemd) stop(ctx context.Context, name string) error {
	done := make(chan string, 1)
	_, err := s.conn.StopUnitContext(ctx, name, "replace", done)
	if err != nil {
		if isNoSuchUnit(err) {
			return nil
		}
		return fmt.Errorf("stop unit %s: %w", name, err)
	}
	select {
	case r := <-done:
		if r != "done" && r != "skipped" {
			_ = s.conn.ResetFailedUnitContext(ctx, name)
			return fmt.Errorf("stop unit %s: job %s: %w", name, r, errdefs.ErrUnavailable)
		}
	case <-ctx.Done():
		return fmt.Errorf("stop unit %s: %w", name, ctx.Err())
	}
	// A scope whose processes died of SIGKILL ends "failed"; reset it or its name stays taken.
	_ = s.conn.ResetFailedUnitContext(ctx, name)
	return nil
}

// isNoSuchUnit reports systemd's D-Bus error for a unit it does not know (its name, not text).
func isNoSuchUnit(err error) bool {
	var derr dbus.Error
	return errors.As(err, &derr) && (derr.Name == "org.freedesktop.systemd1.NoSuchUnit" ||
		derr.Name == "org.freedesktop.systemd1.LoadFailed")
}

// unitDir is where a unit's cgroup lives: the unified hierarchy, or the name=systemd one on
// cgroup v1 (the hierarchy systemd tracks units in).
func unitDir(p string) string {
	if DetectMode() == Unified {
		return filepath.Join(unifiedRoot, p)
	}
	return filepath.Join("/sys/fs/cgroup/systemd", p)
}

// scopesIn lists the scopes at or below the unit cgroup p (p itself when it is a scope).
func scopesIn(p string) []string {
	if strings.HasSuffix(p, ".scope") {
		return []string{p}
	}
	root := unitDir(p)
	var out []string
	_ = filepath.WalkDir(root, func(d string, e fs.DirEntry, err error) error {
		if err != nil || !e.IsDir() {
			return nil
		}
		if strings.HasSuffix(e.Name(), ".scope") {
			rel, _ := filepath.Rel(root, d)
			out = append(out, path.Join(p, filepath.ToSlash(rel)))
			return filepath.SkipDir
		}
		return nil
	})
	return out
}

func dirExists(d string) bool {
	fi, err := os.Stat(d)
	return err == nil && fi.IsDir()
}
