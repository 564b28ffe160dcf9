package server

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"

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

// probeUserNamespaces reports whether pods can get user namespaces on this node: the kernel
// must create idmapped mounts of the directories that hold image layers and pod files (as
// critest's supportsIDMap checks). Failures are logged once, at startup.
func probeUserNamespaces(dirs []string, log *slog.Logger) bool {
	tmp, err := os.MkdirTemp("", "berth-userns-probe")
	if err != nil {
		log.Warn("user namespaces disabled: probe", "err", err)
		return false
	}
	defer os.RemoveAll(tmp)
	m := []netns.IDMap{{ContainerID: 0, HostID: 65536, Size: 65536}}
	p, err := netns.Create(netns.Options{Dir: tmp, UTS: true, UserNS: &netns.UserNS{UIDs: m, GIDs: m}})
	if err != nil {
		log.Warn("user namespaces disabled: cannot create one", "err", err)
		return false
	}
	defer func() {
		for _, path := range []string{p.UTS, p.User} {
			if err := netns.Unpin(path); err != nil {
				log.Warn("user namespace probe: unpin", "path", path, "err", err)
			}
		}
	}()
	for _, dir := range dirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			log.Warn("user namespaces disabled: probe", "dir", dir, "err", err)
			return false
		}
		if err := probeIDMap(dir, p.User); err != nil {
			log.Warn("user namespaces disabled: no idmapped mounts", "dir", dir, "err", err)
			return false
		}
	}
	return true
}

// probeIDMap makes a detached idmapped clone of dir; closing it unmounts it.
func probeIDMap(dir, userns string) error {
	tree, err := openIDMapped(dir, userns, false)
	if err != nil {
		return err
	}
	return unix.Close(tree)
}
