package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/network/netns"
)

// A pod with user namespace mode POD (hostUsers: false) gets one user namespace for all its
// containers. The agent creates it with the pod's net, ipc and uts namespaces inside it (the
// kernel checks the owner of the net and pid namespaces when runc mounts sysfs and proc), pins
// it beside them at <state>/netns/<id>/user, recorded in the ledger as a pinned namespace and
// released with the pod. The pod init joins it before making the pod's pid namespace; each
// container joins it by path (spec.SandboxInfo.UserNSPath); its rootfs sits on idmapped layers
// (container_idmap.go).

// podUserNS validates the pod's user namespace option. It runs before any side effect: the
// kubelet (and critest) expect InvalidArgument for several ranges, an unmapped root, modes
// CONTAINER and TARGET, and host namespaces combined with a pod user namespace (their owner
// is the host's user namespace, so the pod could not use them).
func podUserNS(cfg *runtimeapi.PodSandboxConfig) (spec.IDMappings, error) {
	nsOpts := namespaceOptions(cfg)
	m, err := spec.UserNamespace(nsOpts.GetUsernsOptions())
	if err != nil || !m.Enabled() {
		return m, err
	}
	for _, ns := range []struct {
		name string
		mode runtimeapi.NamespaceMode
	}{{"network", nsOpts.GetNetwork()}, {"pid", nsOpts.GetPid()}, {"ipc", nsOpts.GetIpc()}} {
		if ns.mode == runtimeapi.NamespaceMode_NODE {
			return spec.IDMappings{}, fmt.Errorf("host %s namespace with a pod user namespace: %w", ns.name, errdefs.ErrInvalidArgument)
		}
	}
	return m, nil
}

// podUserNSPath is the pinned user namespace of a pod, "" when it uses the host's. The pin
// sits beside the pod's net namespace, which a pod with a user namespace always has.
func podUserNSPath(md store.SandboxMetadata) string {
	m, err := podUserNS(md.Config.PodSandboxConfig)
	if err != nil || !m.Enabled() || md.NetNS == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(md.NetNS), string(netns.KindUser))
}

// netnsUserNS converts the pod's mappings for pkg/network/netns; nil means no user namespace.
func netnsUserNS(m spec.IDMappings) *netns.UserNS {
	if !m.Enabled() {
		return nil
	}
	conv := func(in []specs.LinuxIDMapping) []netns.IDMap {
		out := make([]netns.IDMap, len(in))
		for i, x := range in {
			out[i] = netns.IDMap{ContainerID: x.ContainerID, HostID: x.HostID, Size: x.Size}
		}
		return out
	}
	return &netns.UserNS{UIDs: conv(m.UIDs), GIDs: conv(m.GIDs)}
}

// userNSSupport is the startup decision on pods with user namespaces (probeUserNamespaces).
// Idmapped mounts depend on the filesystem: ext4, xfs and btrfs have them since Linux 5.12-5.15,
// tmpfs only since 6.3. The image layers (under the root dir) must be idmappable, or pods with
// a user namespace are refused. Bind mounts from filesystems that cannot be idmapped (the pod's
// files and /dev/shm on a tmpfs state dir of a 6.1 kernel) are mounted without the idmap
// instead: the container sees them owned by the overflow id, readable as their modes allow
// (idmapUnsupported).
type userNSSupport struct {
	enabled bool
	reason  string // why not, when !enabled
	// noIDMap are the filesystem magics (statfs f_type) found unable to idmap.
	noIDMap map[int64]bool
}

// probeUserNamespaces decides what userNSSupport says: it idmaps a clone of the root dir (the
// image layers and container layers live there), of the state dir, and of a detached tmpfs
// (/dev/shm of each pod), and logs the decision once.
func probeUserNamespaces(root, state string, log *slog.Logger) userNSSupport {
	u := userNSSupport{noIDMap: map[int64]bool{}}
	tmp, err := os.MkdirTemp("", "berth-userns-probe")
	if err != nil {
		return u.disable(log, fmt.Sprintf("probe: %v", err))
	}
	defer os.RemoveAll(tmp)
	m := []netns.IDMap{{ContainerID: 0, HostID: 65536, Size: 65536}}
	p, err := netns.Create(netns.Options{Dir: tmp, UTS: true, UserNS: &netns.UserNS{UIDs: m, GIDs: m}})
	if err != nil {
		return u.disable(log, fmt.Sprintf("cannot create a user namespace: %v", err))
	}
	defer func() {
		for _, path := range []string{p.UTS, p.User} {
			if err := netns.Unpin(path); err != nil {
				log.Warn("user namespace probe: unpin", "path", path, "err", err)
			}
		}
	}()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return u.disable(log, fmt.Sprintf("probe %s: %v", root, err))
	}
	if err := probeIDMap(root, p.User); err != nil {
		return u.disable(log, fmt.Sprintf("no idmapped mounts on the root dir %s: %v", root, err))
	}
	u.enabled = true
	if err := os.MkdirAll(state, 0o755); err == nil {
		u.probeOther(state, p.User, log)
	}
	if err := probeIDMapTmpfs(p.User); err != nil {
		u.noIDMap[unix.TMPFS_MAGIC] = true
		log.Warn("user namespaces: tmpfs cannot be idmapped on this kernel (Linux 6.3+ can); bind mounts from tmpfs are not idmapped", "err", err)
	}
	log.Info("user namespaces enabled", "filesystems_without_idmap", len(u.noIDMap))
	return u
}

// probeOther records the filesystem of dir as unable to idmap when the probe fails there.
func (u *userNSSupport) probeOther(dir, userns string, log *slog.Logger) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return
	}
	if err := probeIDMap(dir, userns); err != nil {
		u.noIDMap[int64(st.Type)] = true
		log.Warn("user namespaces: the filesystem of this dir cannot be idmapped; its bind mounts are not idmapped", "dir", dir, "err", err)
	}
}

func (u userNSSupport) disable(log *slog.Logger, reason string) userNSSupport {
	log.Warn("user namespaces disabled", "reason", reason)
	u.enabled, u.reason = false, reason
	return u
}

// probeIDMap makes a detached idmapped clone of dir; closing it unmounts it.
func probeIDMap(dir, userns string) error {
	tree, err := openIDMapped(dir, userns, false)
	if err != nil {
		return err
	}
	return unix.Close(tree)
}

// probeIDMapTmpfs idmaps a tmpfs that is never attached anywhere: closing its descriptors
// frees it, so the probe creates no object the ledger would have to know.
func probeIDMapTmpfs(userns string) error {
	fsfd, err := unix.Fsopen("tmpfs", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen tmpfs: %w", err)
	}
	defer unix.Close(fsfd)
	if err := unix.FsconfigSetString(fsfd, "size", "4k"); err != nil {
		return fmt.Errorf("configure tmpfs: %w", err)
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create tmpfs: %w", err)
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("fsmount tmpfs: %w", err)
	}
	defer unix.Close(mfd)
	nsfd, err := unix.Open(userns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open user namespace: %w", err)
	}
	defer unix.Close(nsfd)
	attr := &unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(nsfd)}
	if err := unix.MountSetattr(mfd, "", unix.AT_EMPTY_PATH, attr); err != nil {
		return fmt.Errorf("idmap a tmpfs: %w", err)
	}
	return nil
}

// idmapUnsupported removes the idmap from the spec's bind mounts whose source sits on a
// filesystem this kernel cannot idmap (runc would fail the container on them), and returns a
// note for each such mount the request asked for (the pod's own files and /dev/shm, under
// the state dir, are berth's and go unmentioned).
func (u userNSSupport) idmapUnsupported(sp *specs.Spec, state string) []string {
	if len(u.noIDMap) == 0 {
		return nil
	}
	var notes []string
	for i := range sp.Mounts {
		m := &sp.Mounts[i]
		if len(m.UIDMappings) == 0 && len(m.GIDMappings) == 0 {
			continue
		}
		var st unix.Statfs_t
		if err := unix.Statfs(m.Source, &st); err != nil || !u.noIDMap[int64(st.Type)] {
			continue
		}
		m.UIDMappings, m.GIDMappings = nil, nil
		if !isUnder(m.Source, state) {
			notes = append(notes, fmt.Sprintf("mount %s not idmapped (its filesystem cannot be idmapped on this kernel)", m.Destination))
		}
	}
	return notes
}

// isUnder reports whether path is dir or below it.
func isUnder(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}
