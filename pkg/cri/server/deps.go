package server

import (
	"context"
	"syscall"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/network/cni"
)

// The runtime RPCs consume these small interfaces; adapters.go binds them to pkg/shim,
// pkg/network/netns and pkg/cgroups, and tests bind them to fakes.

// ShimStartRequest describes the shim of one sandbox.
type ShimStartRequest struct {
	SandboxID, Dir string
	// OCIRuntime is the external OCI runtime binary of the sandbox's handler; "" = builtin.
	OCIRuntime string
	// OCIShimCgroups: the shim manages the cgroups of OCIRuntime's containers.
	OCIShimCgroups bool
}

// ShimManager starts and reconnects the per-pod shims.
type ShimManager interface {
	// Start spawns the shim of a sandbox with its socket and state in r.Dir.
	Start(ctx context.Context, r ShimStartRequest) (ShimClient, error)
	// Connect reaches the shim that already runs in dir (after an agent restart).
	Connect(ctx context.Context, dir string) (ShimClient, error)
}

// ShimClient drives the containers of one pod through its shim.
type ShimClient interface {
	Create(ctx context.Context, req ShimCreateRequest) (pid int, err error)
	Start(ctx context.Context, id string) error
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	// Wait blocks until the container exits.
	Wait(ctx context.Context, id string) (ShimState, error)
	State(ctx context.Context, id string) (ShimState, error)
	List(ctx context.Context) ([]ShimState, error)
	Update(ctx context.Context, id string, res *specs.LinuxResources) error
	ReopenLog(ctx context.Context, id string) error
	// Delete removes a stopped container; a missing one is not an error.
	Delete(ctx context.Context, id string) error
	StartPodInit(ctx context.Context, req ShimPodInitRequest) (pid int, err error)
	// Shutdown deletes every container and ends the shim.
	Shutdown(ctx context.Context) error
	Close() error

	// ExecSync, Exec and Attach serve the CRI exec and attach RPCs (types in streaming_shim.go).
	// ExecSync keeps the first maxOutput bytes of each stream and counts the rest.
	ExecSync(ctx context.Context, id string, cmd []string, timeout time.Duration, maxOutput int) (ShimExecSyncResult, error)
	Exec(ctx context.Context, id string, opts ShimExecOptions) (ShimExecResult, error)
	Attach(ctx context.Context, id string, tty bool, s ShimStreams) error

	// Checkpoint dumps a running container's processes with CRIU into req.ImagesDir; it
	// keeps running. Tty containers are refused (errdefs.ErrFailedPrecondition).
	Checkpoint(ctx context.Context, req ShimCheckpointRequest) error
}

// ShimCreateRequest creates a container from an OCI bundle.
type ShimCreateRequest struct {
	ID                    string
	Bundle                string
	LogPath               string
	Stdin, StdinOnce, Tty bool
	// RestoreImages, when set, creates the container for a CRIU restore from that
	// directory: Start restores the checkpointed processes. RestoreWork gets CRIU's logs.
	RestoreImages, RestoreWork string
}

// ShimCheckpointRequest asks the shim for a CRIU dump of one container.
type ShimCheckpointRequest struct {
	ID, ImagesDir, WorkDir string
}

// ShimPodInitRequest starts the pod's pause-like init process.
type ShimPodInitRequest struct {
	NetNS, IPCNS, UTSNS string
	CgroupPath          string
	UserNS              string              // the pod's pinned user namespace; "" = the host's
	Seccomp             *specs.LinuxSeccomp // the pod's seccomp filter; nil = none
}

// Shim container states.
const (
	shimCreated = "created"
	shimRunning = "running"
	shimStopped = "stopped"
)

// ShimState is a container as the shim sees it.
type ShimState struct {
	ID                               string
	Status                           string // created, running, stopped, unknown
	Pid                              int
	ExitCode                         int32
	CreatedAt, StartedAt, FinishedAt time.Time
	OOMKilled                        bool
	Reason, Message                  string
}

// Namespaces creates, pins and enters pod namespaces.
type Namespaces interface {
	Create(opts NamespaceOptions) (NamespacePaths, error)
	// Unpin unmounts and removes a pinned namespace; a missing one is not an error.
	Unpin(path string) error
	// Do runs fn on a thread that has joined the namespace pinned at path.
	Do(path string, fn func() error) error
}

// NamespaceOptions selects the namespaces to create and where to pin them.
type NamespaceOptions struct {
	Dir           string
	Net, IPC, UTS bool
	Hostname      string
	// UserNS, when enabled, adds a user namespace (pinned at Dir/user) owning the others.
	UserNS spec.IDMappings
}

// NamespacePaths are the pinned namespaces; "" for one not created.
type NamespacePaths struct{ Net, IPC, UTS, User string }

// Cgroups manages pod cgroups and converts CRI resources. Under the systemd driver the pod
// cgroups are slices and the containers' and pod init's are scopes, created and removed
// through systemd; paths stay cgroupfs paths (the unit's cgroup) for the ledger and stats.
type Cgroups interface {
	// NormalizeParent turns a CRI cgroup_parent into a cgroupfs path ("" = the default parent).
	NormalizeParent(parent string) (string, error)
	// PodPath is the cgroup berth makes for a pod below a parent of its own choosing.
	PodPath(parent, sandboxID string) string
	EnsurePod(path string) error
	// PodInitCgroup is the leaf cgroup of the pod's init, below the pod's cgroup.
	PodInitCgroup(podPath, sandboxID string) CgroupRef
	// EnsureLeaf creates a cgroup that will hold processes (no controllers enabled in it); a
	// scope, which systemd creates with its first process, is left to the shim.
	EnsureLeaf(path string) error
	// Remove kills leftovers and removes the cgroup (stops the unit under systemd); a
	// missing one is not an error.
	Remove(path string) error
	ContainerCgroup(podPath, containerID string) CgroupRef
	// Freeze freezes (true) or thaws a container's cgroup (its CgroupRef.Path); frozen, it
	// returns once every task is stopped. Only a pod checkpoint freezes (sandbox_checkpoint.go).
	Freeze(path string, frozen bool) error
	// ShimCgroup is the cgroup a pod's shim moves itself into ("" = it stays where started).
	ShimCgroup(sandboxID string) string
	ToResources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error)
	// SetPod writes r to the pod cgroup at path; fields left zero keep their value. A memory
	// limit below the cgroup's usage is errdefs.ErrFailedPrecondition and writes nothing.
	SetPod(path string, r *runtimeapi.LinuxContainerResources) error
	V2() bool
	// Hugetlb reports whether hugepage limits can be applied on this node.
	Hugetlb() bool
}

// CgroupRef names one cgroup twice: Path is its cgroupfs path relative to the hierarchy roots
// (the ledger, stats); Runtime is what the OCI spec and the shim get: Path under cgroupfs,
// "<slice>:<prefix>:<name>" (runc's systemd form) under systemd.
type CgroupRef struct{ Path, Runtime string }

// Mounter makes and removes mounts.
type Mounter interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	// Unmount detaches target; a path that is not mounted (or missing) is not an error.
	Unmount(target string) error
}

// SpecGenerator builds a container's OCI spec (pkg/cri/spec.Generate).
type SpecGenerator func(id string, cfg *runtimeapi.ContainerConfig, sb spec.SandboxInfo, img spec.ImageConfig, opts spec.Options) (*specs.Spec, error)

// ContainerImages is what container creation needs of the image store (pkg/images).
type ContainerImages interface {
	// Resolve finds an image by name, digest, id or id prefix; errdefs.ErrNotFound if absent.
	Resolve(ctx context.Context, ref string) (ImageInfo, error)
	// Lowers lists the image's snapshot directories, topmost first.
	Lowers(ctx context.Context, imageID string) ([]string, error)
	Lease(ctx context.Context, owner, imageID string) error
	Unlease(ctx context.Context, owner string) error
}

// ImageInfo is the part of an image a container needs.
type ImageInfo struct {
	ID     string // sha256:<config digest>
	Config spec.ImageConfig
	// Annotations are the manifest's; a checkpoint image is marked there (container_restore.go).
	Annotations map[string]string
}

// Network attaches pod network namespaces to the pod network (pkg/network/cni). Calls for
// one sandbox must not overlap; the service serializes them.
type Network interface {
	// Status is nil when pods can be networked, else why not (for NetworkReady).
	Status() error
	// SetPodCIDR takes the kubelet's pod CIDR.
	SetPodCIDR(cidr string) error
	// Setup runs CNI ADD; on failure nothing of the attachment is left.
	Setup(ctx context.Context, req cni.SetupRequest) (cni.Result, error)
	// Teardown runs CNI DEL; tearing down twice, or what was never set up, is success.
	Teardown(ctx context.Context, req cni.TeardownRequest) error
	// GC releases what sandboxes other than valid hold.
	GC(ctx context.Context, valid []string) error
}
