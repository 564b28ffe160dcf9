package server

import (
	"fmt"
	"log/slog"
	"os"
	"slices"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// probeRecursiveReadOnly reports whether read-only bind mounts can cover their submounts:
// runc's "rro" option (what the spec generator emits for Mount.recursive_read_only) needs
// mount_setattr with AT_RECURSIVE (Linux 5.12). Advertised only when it works here.
func probeRecursiveReadOnly(dir string, log *slog.Logger) bool {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		log.Warn("recursive read-only mounts disabled: probe", "dir", dir, "err", err)
		return false
	}
	if err := recursiveReadOnlyClone(dir); err != nil {
		log.Warn("recursive read-only mounts disabled", "err", err)
		return false
	}
	return true
}

// recursiveReadOnlyClone makes a detached recursive clone of dir read-only; closing the
// clone unmounts it, so nothing is left behind.
func recursiveReadOnlyClone(dir string) error {
	fd, err := unix.OpenTree(unix.AT_FDCWD, dir, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC|unix.AT_RECURSIVE)
	if err != nil {
		return fmt.Errorf("clone %s: %w", dir, err)
	}
	defer unix.Close(fd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_RDONLY}
	if err := unix.MountSetattr(fd, "", unix.AT_EMPTY_PATH|unix.AT_RECURSIVE, attr); err != nil {
		return fmt.Errorf("make a clone of %s recursively read-only: %w", dir, err)
	}
	return nil
}

// runtimeHandlers names the handlers berth serves. It has one runtime, libcontainer inside the
// pod's shim; the kubelet asks for it as "" (no RuntimeClass) or "runc" (RuntimeClasses written
// for containerd's default handler). Any other name is refused: running it with runc anyway
// would give the pod an isolation its RuntimeClass did not ask for.
func runtimeHandlers() []string { return []string{"", "runc"} }

// checkRuntimeHandler refuses a handler berth does not serve, before anything is created.
func checkRuntimeHandler(name string) error {
	if slices.Contains(runtimeHandlers(), name) {
		return nil
	}
	return fmt.Errorf("runtime handler %q is not configured (berth serves %q): %w", name, runtimeHandlers(), errdefs.ErrNotFound)
}

// handlerStatus lists every handler with the features the node supports; all share one runtime,
// so they share the features.
func (s *Service) handlerStatus() []*runtimeapi.RuntimeHandler {
	var out []*runtimeapi.RuntimeHandler
	for _, name := range runtimeHandlers() {
		out = append(out, &runtimeapi.RuntimeHandler{
			Name: name,
			Features: &runtimeapi.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: s.features.RecursiveReadOnlyMounts,
				UserNamespaces:          s.features.UserNamespaces,
			},
		})
	}
	return out
}
