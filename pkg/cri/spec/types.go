package spec

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// ImageConfig is the part of the image config that shapes the container. Its fields match
// pkg/images.ImageConfig one for one so the agent can convert with ImageConfig(img.Config).
type ImageConfig struct {
	User, WorkingDir, StopSignal string
	Env, Entrypoint, Cmd         []string
	Volumes                      []string
	Labels                       map[string]string
}

// SandboxInfo is what the agent knows about the pod the container joins.
type SandboxInfo struct {
	ID                   string
	Name, Namespace, UID string // pod metadata, copied into annotations
	Hostname             string

	// Pinned namespaces of the pod; "" means the host namespace.
	NetNSPath, IPCNSPath, UTSNSPath string
	// PIDNSPath is the pod init's /proc/<pid>/ns/pid, joined when the pid mode is POD.
	PIDNSPath string
	// UserNSPath is the pod's pinned user namespace, created with the mappings of its
	// user namespace option (mode POD); "" when the pod uses the host's.
	UserNSPath string

	CgroupParent string // the pod cgroup (cgroupfs path)

	// Files and directories the agent prepared for the pod; "" skips the mount.
	HostsPath, HostnamePath, ResolvPath, ShmPath string

	// Sysctls from the pod config, already validated by the caller.
	Sysctls map[string]string

	SecurityContext *runtimeapi.LinuxSandboxSecurityContext
}

// UserLookup resolves the uid, gid and additional gids the container process runs as.
type UserLookup interface {
	LookupUser(sc *runtimeapi.LinuxContainerSecurityContext, img ImageConfig) (specs.User, error)
}

// DeviceLookup lists the device nodes at a host path: the node itself, or every node below a
// directory. Returned paths are host paths.
type DeviceLookup interface {
	LookupDevices(hostPath string) ([]specs.LinuxDevice, error)
}

// Options carries the agent-side decisions that are not part of the CRI request.
type Options struct {
	// RootfsPath is spec.Root.Path, absolute or relative to the bundle ("rootfs" when empty).
	RootfsPath string
	// CgroupsPath is the container's own cgroup (cgroupfs path, below the pod cgroup); when
	// empty it is <SandboxInfo.CgroupParent>/<id>, as cgroups.ContainerPath.
	CgroupsPath string
	// ImageName is the image reference reported in annotations (defaults to cfg.Image.Image).
	ImageName string
	// TargetPIDNSPath is /proc/<pid>/ns/pid of the target container for pid mode TARGET.
	TargetPIDNSPath string
	// CgroupV2 enables the cgroup v2 only settings (unified resources).
	CgroupV2 bool
	// NoHugetlb drops hugepage limits: the node has no hugetlb controller in use,
	// and runc refuses limits it cannot apply (the kubelet sends a limit, often 0,
	// for every page size the kernel knows). containerd drops them too.
	NoHugetlb bool
	// CgroupNS gives the container a private cgroup namespace (wanted on cgroup v2 only).
	CgroupNS bool
	// PidsLimit caps the container's pids cgroup; 0 leaves it unlimited.
	PidsLimit int64
	// ImageVolumes are the host directories the agent prepared for the CRI image mounts
	// (Mount.image, with image_sub_path applied), by cleaned container path.
	ImageVolumes map[string]string
	// AnonymousVolumes are the host directories the agent made for the image's declared
	// volumes (ImageConfig.Volumes) that no CRI mount covers, by cleaned container path.
	// Their content was copied from the container's root, ids as seen there, so they are
	// never idmapped again.
	AnonymousVolumes map[string]string

	// Users resolves the container user; nil reads /etc/passwd and /etc/group of RootfsPath
	// (which then must be an absolute path).
	Users UserLookup
	// Devices resolves CRI devices and, for privileged containers, the host's /dev; nil reads
	// the host's /dev.
	Devices DeviceLookup
	// HostCapabilities are the capabilities the agent holds (CurrentCapabilities()): what
	// privileged containers and "add ALL" get. nil means every capability Linux knows.
	HostCapabilities []string
	// SeccompProfiles reads Localhost seccomp profiles; nil reads the node's files.
	SeccompProfiles ProfileLoader
	// RuntimeDefaultSeccomp is what the profile RuntimeDefault means for the pod's runtime
	// handler (Unconfined, or Localhost with a path); nil is moby's default profile.
	RuntimeDefaultSeccomp *runtimeapi.SecurityProfile

	// AppArmor and SELinuxEnabled describe the node's kernel (ProbeAppArmor() and the agent's
	// loading of the default profile, SELinuxEnabled()); they decide which AppArmor and
	// SELinux requests can be honoured.
	AppArmor       AppArmorNode
	SELinuxEnabled bool
}
