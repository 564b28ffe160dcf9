package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/images"
	"github.com/berth-runtime/berth/pkg/network/cni"
	"github.com/berth-runtime/berth/pkg/network/netns"
	"github.com/berth-runtime/berth/pkg/shim"
)

// hostMounter mounts on the host.
type hostMounter struct{}

func (hostMounter) Mount(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return fmt.Errorf("mount %s on %s: %w", fstype, target, err)
	}
	return nil
}

// Unmount detaches target. EINVAL (not a mountpoint) and ENOENT mean there is nothing to do,
// which keeps teardown retryable.
func (hostMounter) Unmount(target string) error {
	err := unix.Unmount(target, unix.MNT_DETACH)
	if err == nil || errors.Is(err, unix.EINVAL) || errors.Is(err, unix.ENOENT) {
		return nil
	}
	return fmt.Errorf("unmount %s: %w", target, err)
}

// hostCgroups binds Cgroups to pkg/cgroups for one driver; sd is the systemd connection of
// the systemd driver (nil under cgroupfs).
type hostCgroups struct {
	driver  string
	mode    cgroups.Mode
	hugetlb bool
	sd      *cgroups.Systemd
}

// newHostCgroups decides at startup what the driver can do here: systemd must be PID 1,
// offer the controllers and answer on D-Bus, or the agent does not start.
func newHostCgroups(ctx context.Context, driver string) (*hostCgroups, error) {
	if driver == "" {
		driver = cgroups.DriverCgroupfs
	}
	if err := cgroups.ValidateDriver(driver); err != nil {
		return nil, err
	}
	h := &hostCgroups{driver: driver, mode: cgroups.DetectMode(), hugetlb: cgroups.HasController("hugetlb")}
	if driver == cgroups.DriverSystemd {
		sd, err := cgroups.ConnectSystemd(ctx)
		if err != nil {
			return nil, err
		}
		h.sd = sd
	}
	return h, nil
}

func (h *hostCgroups) Close() {
	if h.sd != nil {
		h.sd.Close()
	}
}

func (h *hostCgroups) systemd() bool { return h.driver == cgroups.DriverSystemd }

func (h *hostCgroups) NormalizeParent(parent string) (string, error) {
	return cgroups.NormalizeParent(parent, h.driver)
}

func (h *hostCgroups) PodPath(parent, sandboxID string) string {
	return cgroups.PodPath(parent, h.driver, sandboxID)
}

func (h *hostCgroups) EnsurePod(path string) error {
	if h.systemd() {
		return h.sd.EnsureSlice(path)
	}
	return cgroups.EnsurePod(path)
}

func (h *hostCgroups) PodInitCgroup(pod, sandboxID string) CgroupRef {
	if h.systemd() {
		return CgroupRef{
			Path:    cgroups.ScopePath(pod, cgroups.PodInitScopePrefix, sandboxID),
			Runtime: cgroups.RuncScopePath(pod, cgroups.PodInitScopePrefix, sandboxID),
		}
	}
	p := cgroups.PodInitPath(pod)
	return CgroupRef{Path: p, Runtime: p}
}

func (h *hostCgroups) EnsureLeaf(path string) error {
	if cgroups.IsUnitPath(path) {
		return nil // systemd creates a scope together with its first process
	}
	return cgroups.EnsureLeaf(path)
}

// Remove goes through systemd for a unit's cgroup (a ledger entry from the systemd driver)
// and through cgroupfs otherwise.
func (h *hostCgroups) Remove(path string) error {
	if h.sd != nil && cgroups.IsUnitPath(path) {
		return h.sd.RemoveUnit(context.Background(), path)
	}
	return cgroups.Remove(path)
}

// Freeze writes the freezer through cgroupfs under either driver: systemd has no freeze of
// its own that the kernel's would not bypass, and the unit's cgroup is its cgroupfs path.
func (h *hostCgroups) Freeze(path string, frozen bool) error { return cgroups.Freeze(path, frozen) }

func (h *hostCgroups) ContainerCgroup(pod, id string) CgroupRef {
	if h.systemd() {
		return CgroupRef{
			Path:    cgroups.ScopePath(pod, cgroups.ContainerScopePrefix, id),
			Runtime: cgroups.RuncScopePath(pod, cgroups.ContainerScopePrefix, id),
		}
	}
	p := cgroups.ContainerPath(pod, id)
	return CgroupRef{Path: p, Runtime: p}
}

func (h *hostCgroups) ShimCgroup(sandboxID string) string {
	if h.systemd() {
		return cgroups.ShimScopePath(sandboxID)
	}
	return ""
}

func (h *hostCgroups) V2() bool      { return h.mode.V2() }
func (h *hostCgroups) Hugetlb() bool { return h.hugetlb }

func (h *hostCgroups) ToResources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	if r == nil {
		return &specs.LinuxResources{}, nil
	}
	return cgroups.ToResources(h.resources(r), h.mode)
}

func (h *hostCgroups) SetPod(path string, r *runtimeapi.LinuxContainerResources) error {
	return cgroups.SetPod(path, h.resources(r), h.mode)
}

// resources converts CRI resources to pkg/cgroups' plain form; hugepage limits are dropped
// when the node has no hugetlb controller.
func (h *hostCgroups) resources(r *runtimeapi.LinuxContainerResources) cgroups.Resources {
	in := cgroups.Resources{
		CPUShares: r.GetCpuShares(), CPUQuota: r.GetCpuQuota(), CPUPeriod: r.GetCpuPeriod(),
		CPUSetCPUs: r.GetCpusetCpus(), CPUSetMems: r.GetCpusetMems(),
		MemoryLimitBytes: r.GetMemoryLimitInBytes(), MemorySwapLimitBytes: r.GetMemorySwapLimitInBytes(),
		Unified: r.GetUnified(),
	}
	if len(r.HugepageLimits) > 0 && h.hugetlb {
		in.HugepageLimits = map[string]uint64{}
		for _, l := range r.HugepageLimits {
			in.HugepageLimits[l.GetPageSize()] = l.GetLimit()
		}
	}
	return in
}

// hostNamespaces binds Namespaces to pkg/network/netns.
type hostNamespaces struct{}

func (hostNamespaces) Create(o NamespaceOptions) (NamespacePaths, error) {
	p, err := netns.Create(netns.Options{Dir: o.Dir, Net: o.Net, IPC: o.IPC, UTS: o.UTS, Hostname: o.Hostname, UserNS: netnsUserNS(o.UserNS)})
	return NamespacePaths{Net: p.Net, IPC: p.IPC, UTS: p.UTS, User: p.User}, err
}

func (hostNamespaces) Unpin(path string) error { return netns.Unpin(path) }

// Do enters the namespace whose kind the pin's file name gives (<dir>/{net,ipc,uts}).
func (hostNamespaces) Do(path string, fn func() error) error {
	return netns.DoNS(netns.Kind(filepath.Base(path)), path, fn)
}

// shimManager binds ShimManager to pkg/shim.
type shimManager struct {
	binary       string
	runtimeRoot  string
	cgroupDriver string
}

// newShimManager finds the shim binary: the configured path, else berth-shim beside the
// agent, else on $PATH. A missing binary fails at the first pod, not at startup, so that
// image-only use of the agent works without it.
func newShimManager(binary, runtimeRoot, cgroupDriver string) *shimManager {
	if binary == "" {
		binary = "berth-shim"
		if exe, err := os.Executable(); err == nil {
			if p := filepath.Join(filepath.Dir(exe), "berth-shim"); fileExists(p) {
				binary = p
			}
		}
	}
	return &shimManager{binary: binary, runtimeRoot: runtimeRoot, cgroupDriver: cgroupDriver}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func (m *shimManager) Start(ctx context.Context, r ShimStartRequest) (ShimClient, error) {
	bin := m.binary
	if !filepath.IsAbs(bin) {
		p, err := exec.LookPath(bin)
		if err != nil {
			return nil, fmt.Errorf("find shim binary %q: %w", bin, err)
		}
		bin = p
	}
	c, err := shim.Start(ctx, shim.StartOptions{Binary: bin, SandboxID: r.SandboxID, Dir: r.Dir, RuntimeRoot: m.runtimeRoot,
		CgroupDriver: m.cgroupDriver, OCIRuntime: r.OCIRuntime, OCIShimCgroups: r.OCIShimCgroups})
	if err != nil {
		return nil, err
	}
	return shimClient{c}, nil
}

func (m *shimManager) Connect(ctx context.Context, dir string) (ShimClient, error) {
	c, err := shim.Connect(ctx, dir)
	if err != nil {
		return nil, err
	}
	return shimClient{c}, nil
}

// shimClient converts between the server's shim types and pkg/shim's.
type shimClient struct{ c *shim.Client }

func (s shimClient) Create(ctx context.Context, r ShimCreateRequest) (int, error) {
	return s.c.Create(ctx, shim.CreateRequest{ID: r.ID, Bundle: r.Bundle, LogPath: r.LogPath, Stdin: r.Stdin, StdinOnce: r.StdinOnce, Tty: r.Tty,
		RestoreImages: r.RestoreImages, RestoreWork: r.RestoreWork})
}
func (s shimClient) Checkpoint(ctx context.Context, r ShimCheckpointRequest) error {
	return s.c.Checkpoint(ctx, shim.CheckpointRequest{ID: r.ID, ImagesDir: r.ImagesDir, WorkDir: r.WorkDir})
}
func (s shimClient) Start(ctx context.Context, id string) error { return s.c.Start(ctx, id) }
func (s shimClient) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	return s.c.Kill(ctx, id, sig, all)
}
func (s shimClient) Wait(ctx context.Context, id string) (ShimState, error) {
	st, err := s.c.Wait(ctx, id)
	return fromShimState(st), err
}
func (s shimClient) State(ctx context.Context, id string) (ShimState, error) {
	st, err := s.c.State(ctx, id)
	return fromShimState(st), err
}
func (s shimClient) List(ctx context.Context) ([]ShimState, error) {
	sts, err := s.c.List(ctx)
	out := make([]ShimState, len(sts))
	for i, st := range sts {
		out[i] = fromShimState(st)
	}
	return out, err
}
func (s shimClient) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	return s.c.Update(ctx, id, res)
}
func (s shimClient) ReopenLog(ctx context.Context, id string) error { return s.c.ReopenLog(ctx, id) }
func (s shimClient) Delete(ctx context.Context, id string) error    { return s.c.Delete(ctx, id) }
func (s shimClient) StartPodInit(ctx context.Context, r ShimPodInitRequest) (int, error) {
	return s.c.StartPodInit(ctx, shim.PodInitRequest{NetNS: r.NetNS, IPCNS: r.IPCNS, UTSNS: r.UTSNS, CgroupPath: r.CgroupPath, UserNS: r.UserNS, Seccomp: r.Seccomp})
}
func (s shimClient) Shutdown(ctx context.Context) error { return s.c.Shutdown(ctx) }
func (s shimClient) Close() error                       { return s.c.Close() }

func fromShimState(st shim.State) ShimState {
	return ShimState{
		ID: st.ID, Status: st.Status, Pid: st.Pid, ExitCode: st.ExitCode,
		CreatedAt: st.CreatedAt, StartedAt: st.StartedAt, FinishedAt: st.FinishedAt,
		OOMKilled: st.OOMKilled, Reason: st.Reason, Message: st.Message,
	}
}

// imageSource is the part of *images.Service that containers use.
type imageSource interface {
	Get(ctx context.Context, ref string) (images.Image, error)
	Lowers(ctx context.Context, imageID string) ([]string, error)
	Lease(ctx context.Context, owner, imageID string) error
	Unlease(ctx context.Context, owner string) error
}

// containerImages binds ContainerImages to pkg/images.
type containerImages struct{ imageSource }

func (c containerImages) Resolve(ctx context.Context, ref string) (ImageInfo, error) {
	img, err := c.Get(ctx, ref)
	if err != nil {
		return ImageInfo{}, err
	}
	return ImageInfo{ID: img.ID, Config: spec.ImageConfig(img.Config), Annotations: img.Annotations}, nil
}

// spec.Generate is the default SpecGenerator; keep the signatures in step.
var _ SpecGenerator = spec.Generate

// newCNINetwork binds Network to pkg/network/cni. Its cache and host-local's reservations
// live under the agent's state dir, so that each agent (and each test agent) keeps its own.
func newCNINetwork(cfg config.Config, log *slog.Logger) (*cni.Manager, error) {
	return cni.New(cni.Options{
		ConfDir:       cfg.Network.CNIConfDir,
		BinDirs:       cfg.Network.CNIBinDirs,
		CacheDir:      filepath.Join(cfg.State, "cni", "cache"),
		DataDir:       filepath.Join(cfg.State, "cni", "networks"),
		DefaultSubnet: cfg.Network.DefaultSubnet,
		DefaultBridge: cfg.Network.DefaultBridge,
		Logger:        log.With("component", "cni"),
	})
}

var _ Network = (*cni.Manager)(nil)
