package spec

import (
	"fmt"
	"math"
	"slices"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// IDMappings are a pod's user namespace mappings, in OCI form. A zero value means the host's
// user namespace (mode NODE, or no user namespace option at all).
type IDMappings struct {
	UIDs, GIDs []specs.LinuxIDMapping
}

// Enabled reports whether the pod runs in its own user namespace.
func (m IDMappings) Enabled() bool { return len(m.UIDs) > 0 }

// UserNamespace validates a pod's user namespace option (hostUsers: false in Kubernetes) and
// returns its mappings. The agent calls it in RunPodSandbox, before any side effect, and
// Generate calls it again for every container.
//
// What the kubelet sends, and what containerd and CRI-O accept: mode NODE without mappings, or
// mode POD with exactly one uid and one gid range, each mapping container id 0 (root inside)
// to an unprivileged host range. CONTAINER and TARGET are not user namespace modes.
func UserNamespace(u *runtimeapi.UserNamespace) (IDMappings, error) {
	if u == nil {
		// Mode POD is the enum's zero value: only a present option asks for a user namespace.
		return IDMappings{}, nil
	}
	switch u.GetMode() {
	case runtimeapi.NamespaceMode_NODE:
		if len(u.GetUids()) > 0 || len(u.GetGids()) > 0 {
			return IDMappings{}, fmt.Errorf("user namespace mode NODE with id mappings: %w", errdefs.ErrInvalidArgument)
		}
		return IDMappings{}, nil
	case runtimeapi.NamespaceMode_POD:
	default:
		return IDMappings{}, fmt.Errorf("user namespace mode %v: only POD and NODE are supported: %w", u.GetMode(), errdefs.ErrInvalidArgument)
	}
	uids, err := idMapping("uid", u.GetUids())
	if err != nil {
		return IDMappings{}, err
	}
	gids, err := idMapping("gid", u.GetGids())
	if err != nil {
		return IDMappings{}, err
	}
	return IDMappings{UIDs: uids, GIDs: gids}, nil
}

func idMapping(kind string, ms []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
	if len(ms) != 1 {
		// One contiguous range is what the kubelet allocates; several ranges would also make
		// the idmapped mounts and the ownership checks below ambiguous.
		return nil, fmt.Errorf("user namespace: want exactly one %s mapping, got %d: %w", kind, len(ms), errdefs.ErrInvalidArgument)
	}
	m := ms[0]
	switch {
	case m.GetLength() == 0:
		return nil, fmt.Errorf("user namespace: %s mapping of length 0: %w", kind, errdefs.ErrInvalidArgument)
	case m.GetContainerId() != 0:
		return nil, fmt.Errorf("user namespace: %s mapping must start at container id 0 (root must be mapped), got %d: %w", kind, m.GetContainerId(), errdefs.ErrInvalidArgument)
	case m.GetHostId() == 0:
		return nil, fmt.Errorf("user namespace: %s mapping maps container root to host root: %w", kind, errdefs.ErrInvalidArgument)
	case uint64(m.GetHostId())+uint64(m.GetLength()) > math.MaxUint32:
		return nil, fmt.Errorf("user namespace: %s mapping %d+%d overflows: %w", kind, m.GetHostId(), m.GetLength(), errdefs.ErrInvalidArgument)
	}
	return []specs.LinuxIDMapping{{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()}}, nil
}

// containerUserNamespace returns the pod's mappings after checking that the container asks for
// the same user namespace as its pod: all containers of a pod share one, and a container
// cannot leave it (nor join one its pod does not have).
func containerUserNamespace(ctr *runtimeapi.NamespaceOption, sb SandboxInfo) (IDMappings, error) {
	pod, err := UserNamespace(sb.SecurityContext.GetNamespaceOptions().GetUsernsOptions())
	if err != nil {
		return IDMappings{}, fmt.Errorf("sandbox %s: %w", sb.ID, err)
	}
	if ctr.GetUsernsOptions() == nil {
		return pod, nil
	}
	own, err := UserNamespace(ctr.GetUsernsOptions())
	if err != nil {
		return IDMappings{}, err
	}
	if !slices.Equal(own.UIDs, pod.UIDs) || !slices.Equal(own.GIDs, pod.GIDs) {
		return IDMappings{}, fmt.Errorf("container user namespace differs from the one of sandbox %s: %w", sb.ID, errdefs.ErrInvalidArgument)
	}
	return pod, nil
}

// checkUserNamespace refuses what cannot work inside a pod user namespace: a privileged
// container (the kubelet forbids it too), host namespaces (their owner is the host's user
// namespace, so e.g. sysfs could not be mounted), and a process user outside the mapping
// (runc would fail at start, far from the cause).
func checkUserNamespace(m IDMappings, sc *runtimeapi.LinuxContainerSecurityContext, user specs.User) error {
	if sc.GetPrivileged() {
		return fmt.Errorf("privileged container in a user namespace: %w", errdefs.ErrInvalidArgument)
	}
	nsOpts := sc.GetNamespaceOptions()
	for _, ns := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"network", nsOpts.GetNetwork()}, {"pid", nsOpts.GetPid()}, {"ipc", nsOpts.GetIpc()}} {
		if ns.mode == runtimeapi.NamespaceMode_NODE {
			return fmt.Errorf("host %s namespace in a user namespace: %w", ns.name, errdefs.ErrInvalidArgument)
		}
	}
	if !mapped(m.UIDs, user.UID) {
		return fmt.Errorf("user id %d is not mapped in the pod's user namespace: %w", user.UID, errdefs.ErrInvalidArgument)
	}
	for _, g := range append([]uint32{user.GID}, user.AdditionalGids...) {
		if !mapped(m.GIDs, g) {
			return fmt.Errorf("group id %d is not mapped in the pod's user namespace: %w", g, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func mapped(ms []specs.LinuxIDMapping, id uint32) bool {
	for _, m := range ms {
		if id >= m.ContainerID && uint64(id) < uint64(m.ContainerID)+uint64(m.Size) {
			return true
		}
	}
	return false
}

// idmapMounts makes every bind mount an idmapped mount with the pod's mappings (unless the
// request gave its own): files the kubelet and the agent create as host root then appear owned
// by the container's root, and what the container writes lands on disk with the ids it sees.
// The default kernel filesystems (proc, sysfs, tmpfs, ...) are mounted by runc inside the user
// namespace and need none.
//
// Sources among staged are left alone: image volumes, which the agent stages from idmapped
// layers already (an idmapped mount cannot be idmapped again), and anonymous volumes, whose
// content the agent copied with the ids the idmapped root shows.
func idmapMounts(mounts []specs.Mount, m IDMappings, staged ...map[string]string) {
	skip := map[string]bool{}
	for _, vols := range staged {
		for _, src := range vols {
			skip[src] = true
		}
	}
	for i := range mounts {
		if mounts[i].Type != "bind" || len(mounts[i].UIDMappings) > 0 || len(mounts[i].GIDMappings) > 0 || skip[mounts[i].Source] {
			continue
		}
		mounts[i].UIDMappings = slices.Clone(m.UIDs)
		mounts[i].GIDMappings = slices.Clone(m.GIDs)
	}
}
