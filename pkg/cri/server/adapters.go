package server

import (
	"errors"
	"fmt"
	"os"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
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

// hostCgroups binds Cgroups to pkg/cgroups for one driver.
type hostCgroups struct {
	driver string
	mode   cgroups.Mode
}

func newHostCgroups(driver string) (*hostCgroups, error) {
	if driver == "" {
		driver = cgroups.DriverCgroupfs
	}
	if err := cgroups.ValidateDriver(driver); err != nil {
		return nil, err
	}
	return &hostCgroups{driver: driver, mode: cgroups.DetectMode()}, nil
}

func (h *hostCgroups) NormalizeParent(parent string) (string, error) {
	return cgroups.NormalizeParent(parent, h.driver)
}
func (h *hostCgroups) EnsurePod(path string) error { return cgroups.EnsurePod(path) }
func (h *hostCgroups) Remove(path string) error    { return cgroups.Remove(path) }
func (h *hostCgroups) ContainerPath(pod, id string) string {
	return cgroups.ContainerPath(pod, id)
}
func (h *hostCgroups) V2() bool { return h.mode.V2() }

func (h *hostCgroups) ToResources(r *runtimeapi.LinuxContainerResources) (*specs.LinuxResources, error) {
	if r == nil {
		return &specs.LinuxResources{}, nil
	}
	in := cgroups.Resources{
		CPUShares: r.CpuShares, CPUQuota: r.CpuQuota, CPUPeriod: r.CpuPeriod,
		CPUSetCPUs: r.CpusetCpus, CPUSetMems: r.CpusetMems,
		MemoryLimitBytes: r.MemoryLimitInBytes, MemorySwapLimitBytes: r.MemorySwapLimitInBytes,
		Unified: r.Unified,
	}
	if len(r.HugepageLimits) > 0 {
		in.HugepageLimits = map[string]uint64{}
		for _, l := range r.HugepageLimits {
			in.HugepageLimits[l.GetPageSize()] = l.GetLimit()
		}
	}
	return cgroups.ToResources(in, h.mode)
}

// doInNamespace runs fn on a locked OS thread that has joined the namespace pinned at path
// (any type setns accepts per thread: net, ipc, uts). If the thread cannot return to its
// original namespace it stays locked, so the Go runtime retires it instead of reusing it.
func doInNamespace(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("open namespace %s: %w", path, err)
	}
	defer target.Close()
	nsType, err := unix.IoctlRetInt(int(target.Fd()), unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("namespace type of %s: %w", path, err)
	}
	runtime.LockOSThread()
	self := fmt.Sprintf("/proc/self/task/%d/ns/%s", unix.Gettid(), nsName(nsType))
	orig, err := os.Open(self)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("open own namespace %s: %w", self, err)
	}
	defer orig.Close()
	if err := unix.Setns(int(target.Fd()), nsType); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("join namespace %s: %w", path, err)
	}
	fnErr := fn()
	if err := unix.Setns(int(orig.Fd()), nsType); err != nil {
		// Leave the thread locked: it dies with this goroutine.
		return errors.Join(fnErr, fmt.Errorf("return from namespace %s: %w", path, err))
	}
	runtime.UnlockOSThread()
	return fnErr
}

func nsName(nsType int) string {
	switch nsType {
	case unix.CLONE_NEWNET:
		return "net"
	case unix.CLONE_NEWIPC:
		return "ipc"
	case unix.CLONE_NEWUTS:
		return "uts"
	}
	return "unknown"
}
