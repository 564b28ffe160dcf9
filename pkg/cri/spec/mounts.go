package spec

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

const (
	etcHosts    = "/etc/hosts"
	etcHostname = "/etc/hostname"
	resolvConf  = "/etc/resolv.conf"
	devShm      = "/dev/shm"
)

// extraMountOptions are the CRI mount_options we pass on: flags that only restrict a bind mount.
// Anything else (rw, propagation, ...) could undo what the other CRI fields ask for.
var extraMountOptions = []string{"nosuid", "nodev", "noexec", "noatime", "nodiratime", "relatime", "strictatime", "nosymfollow"}

// defaultMounts is the filesystem every container gets, the runc/containerd default minus /run.
func defaultMounts(privileged bool) []specs.Mount {
	sysOpts := []string{"nosuid", "noexec", "nodev", "ro"}
	cgroupOpts := []string{"nosuid", "noexec", "nodev", "relatime", "ro"}
	if privileged {
		// Privileged containers manage the host (e.g. load firmware, tune cgroups).
		sysOpts = []string{"nosuid", "noexec", "nodev", "rw"}
		cgroupOpts = []string{"nosuid", "noexec", "nodev", "relatime", "rw"}
	}
	return []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/dev/pts", Type: "devpts", Source: "devpts", Options: []string{"nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"}},
		{Destination: devShm, Type: "tmpfs", Source: "shm", Options: []string{"nosuid", "noexec", "nodev", "mode=1777", "size=65536k"}},
		{Destination: "/dev/mqueue", Type: "mqueue", Source: "mqueue", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: sysOpts},
		{Destination: "/sys/fs/cgroup", Type: "cgroup", Source: "cgroup", Options: cgroupOpts},
	}
}

// Mounts returns the container's mounts, parents before children, and the rootfs propagation
// the CRI mounts need ("" for runc's default). CRI mounts win over the defaults and the sandbox
// files at the same destination; a CRI mount of /dev replaces everything below /dev too.
//
// Image volumes (ImageConfig.Volumes) are not mounted here: the agent makes an anonymous
// volume for each one no CRI mount covers (AnonymousVolumeMounts). CRI image mounts (Mount.image) are read-only binds of the directory the
// agent prepared for them: imageVolumes maps their cleaned container path to it.
func Mounts(cfg *runtimeapi.ContainerConfig, sb SandboxInfo, privileged bool, imageVolumes map[string]string) ([]specs.Mount, string, error) {
	requested := map[string]bool{}
	for _, m := range cfg.GetMounts() {
		requested[path.Clean(m.GetContainerPath())] = true
	}

	criMounts := slices.Clone(cfg.GetMounts())
	readonly := cfg.GetLinux().GetSecurityContext().GetReadonlyRootfs()
	for _, f := range []struct {
		dst, src string
		ro       bool
	}{
		{etcHosts, sb.HostsPath, readonly},
		{etcHostname, sb.HostnamePath, readonly},
		{resolvConf, sb.ResolvPath, readonly},
		{devShm, sb.ShmPath, false},
	} {
		if f.src == "" || requested[f.dst] {
			continue
		}
		criMounts = append(criMounts, &runtimeapi.Mount{ContainerPath: f.dst, HostPath: f.src, Readonly: f.ro})
		requested[f.dst] = true
	}

	var mounts []specs.Mount
	for _, m := range defaultMounts(privileged) {
		if requested[m.Destination] || (requested["/dev"] && strings.HasPrefix(m.Destination, "/dev/")) {
			continue
		}
		mounts = append(mounts, m)
	}

	propagation := ""
	for _, m := range criMounts {
		sm, err := criMount(m, imageVolumes)
		if err != nil {
			return nil, "", err
		}
		mounts = append(mounts, sm)
		switch m.GetPropagation() {
		case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
			propagation = "rshared"
		case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
			if propagation == "" {
				propagation = "rslave"
			}
		}
	}

	sortByDepth(mounts)
	return mounts, propagation, nil
}

// sortByDepth orders mounts parents first. A stable sort keeps the default order among
// equals and puts /a before /a/b, which runc needs: it mounts in list order.
func sortByDepth(mounts []specs.Mount) {
	sort.SliceStable(mounts, func(i, j int) bool {
		return mountDepth(mounts[i].Destination) < mountDepth(mounts[j].Destination)
	})
}

// AnonymousVolumeMounts binds the anonymous volumes the agent made for the image's declared
// volumes (ImageConfig.Volumes), read-write, by container path. The agent leaves out the
// volumes a CRI mount covers: the CRI mount wins.
func AnonymousVolumeMounts(volumes map[string]string) []specs.Mount {
	var out []specs.Mount
	for _, dst := range slices.Sorted(maps.Keys(volumes)) {
		out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: volumes[dst], Options: []string{"rbind", "rprivate"}})
	}
	return out
}

// ValidateMount checks a CRI bind mount (one with a host path) the way Generate will, so that
// the agent can refuse a request before it creates anything on the host.
func ValidateMount(m *runtimeapi.Mount) error {
	if m.GetHostPath() == "" {
		return nil // an image volume: ValidateImageMount
	}
	_, err := criMount(m, nil)
	return err
}

// criMount converts one CRI bind mount. A missing host path is the agent's business (it creates
// a directory, as the kubelet expects); here the mount is only described.
func criMount(m *runtimeapi.Mount, imageVolumes map[string]string) (specs.Mount, error) {
	dst := m.GetContainerPath()
	if !path.IsAbs(dst) || path.Clean(dst) == "/" {
		return specs.Mount{}, fmt.Errorf("mount %q: container path must be absolute and not /: %w", dst, errdefs.ErrInvalidArgument)
	}
	if m.GetHostPath() == "" {
		if m.GetImage().GetImage() != "" {
			return imageMount(m, imageVolumes)
		}
		return specs.Mount{}, fmt.Errorf("mount %q: host path is empty: %w", dst, errdefs.ErrInvalidArgument)
	}
	uids, gids, err := mountIDMappings(m)
	if err != nil {
		return specs.Mount{}, err
	}

	opts := []string{"rbind"}
	switch p := m.GetPropagation(); p {
	case runtimeapi.MountPropagation_PROPAGATION_PRIVATE:
		opts = append(opts, "rprivate")
	case runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER:
		opts = append(opts, "rslave")
	case runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL:
		opts = append(opts, "rshared")
	default:
		return specs.Mount{}, fmt.Errorf("mount %q: unknown propagation %v: %w", dst, p, errdefs.ErrInvalidArgument)
	}

	if m.GetRecursiveReadOnly() {
		// The CRI spec: recursive_read_only requires readonly and private propagation, because
		// new mounts propagating in later would not be read-only.
		if !m.GetReadonly() {
			return specs.Mount{}, fmt.Errorf("mount %q: recursive read-only requires readonly: %w", dst, errdefs.ErrInvalidArgument)
		}
		if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
			return specs.Mount{}, fmt.Errorf("mount %q: recursive read-only requires private propagation: %w", dst, errdefs.ErrInvalidArgument)
		}
		opts = append(opts, "ro", "rro")
	} else if m.GetReadonly() {
		opts = append(opts, "ro")
	} else {
		opts = append(opts, "rw")
	}

	for _, o := range m.GetMountOptions() {
		if !slices.Contains(extraMountOptions, o) {
			return specs.Mount{}, fmt.Errorf("mount %q: unsupported mount option %q: %w", dst, o, errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(opts, o) {
			opts = append(opts, o)
		}
	}
	return specs.Mount{
		Destination: path.Clean(dst), Type: "bind", Source: m.GetHostPath(), Options: opts,
		UIDMappings: uids, GIDMappings: gids,
	}, nil
}

// mountIDMappings converts a CRI idmapped mount's mappings. runc wants both or neither: the
// kernel's idmapped mounts take one user namespace for both.
func mountIDMappings(m *runtimeapi.Mount) (uids, gids []specs.LinuxIDMapping, err error) {
	if (len(m.GetUidMappings()) == 0) != (len(m.GetGidMappings()) == 0) {
		return nil, nil, fmt.Errorf("mount %q: id-mapped mount needs both uid and gid mappings: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
	}
	conv := func(ms []*runtimeapi.IDMapping) ([]specs.LinuxIDMapping, error) {
		var out []specs.LinuxIDMapping
		for _, x := range ms {
			if x.GetLength() == 0 {
				return nil, fmt.Errorf("mount %q: id mapping of length 0: %w", m.GetContainerPath(), errdefs.ErrInvalidArgument)
			}
			out = append(out, specs.LinuxIDMapping{ContainerID: x.GetContainerId(), HostID: x.GetHostId(), Size: x.GetLength()})
		}
		return out, nil
	}
	if uids, err = conv(m.GetUidMappings()); err != nil {
		return nil, nil, err
	}
	if gids, err = conv(m.GetGidMappings()); err != nil {
		return nil, nil, err
	}
	return uids, gids, nil
}

func mountDepth(p string) int {
	p = path.Clean(p)
	if p == "/" {
		return 0
	}
	return strings.Count(p, "/")
}

// ValidateImageMount checks what the CRI requires of an image volume (Mount.image) before the
// agent prepares it: the kubelet always asks for a read-only mount, and the image content
// is shared with other containers, so a writable one is refused.
func ValidateImageMount(m *runtimeapi.Mount) error {
	dst := m.GetContainerPath()
	if !m.GetReadonly() {
		return fmt.Errorf("mount %q: image volume %q must be read-only: %w", dst, m.GetImage().GetImage(), errdefs.ErrInvalidArgument)
	}
	if m.GetPropagation() != runtimeapi.MountPropagation_PROPAGATION_PRIVATE {
		return fmt.Errorf("mount %q: image volume %q takes private propagation only: %w", dst, m.GetImage().GetImage(), errdefs.ErrInvalidArgument)
	}
	if p := m.GetImageSubPath(); p != "" && (path.IsAbs(p) || slices.Contains(strings.Split(p, "/"), "..")) {
		return fmt.Errorf("mount %q: image sub path %q must be relative and stay inside the image: %w", dst, p, errdefs.ErrInvalidArgument)
	}
	return nil
}

// imageMount binds the prepared image volume read-only. It is not noexec: an image volume
// may carry binaries, and the kubelet expects them to run.
func imageMount(m *runtimeapi.Mount, imageVolumes map[string]string) (specs.Mount, error) {
	dst := m.GetContainerPath()
	if err := ValidateImageMount(m); err != nil {
		return specs.Mount{}, err
	}
	src, ok := imageVolumes[path.Clean(dst)]
	if !ok {
		return specs.Mount{}, fmt.Errorf("mount %q: image volume %q was not prepared: %w", dst, m.GetImage().GetImage(), errdefs.ErrFailedPrecondition)
	}
	opts := []string{"rbind", "rprivate", "ro"}
	for _, o := range m.GetMountOptions() {
		if !slices.Contains(extraMountOptions, o) {
			return specs.Mount{}, fmt.Errorf("mount %q: unsupported mount option %q: %w", dst, o, errdefs.ErrInvalidArgument)
		}
		if !slices.Contains(opts, o) {
			opts = append(opts, o)
		}
	}
	return specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts}, nil
}
