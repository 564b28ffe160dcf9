package runtime

import (
	"fmt"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/cgroups"
)

// Update applies new resource limits to a container's cgroup. Device rules
// are not part of a CRI update and stay as created.
func (m *Manager) Update(id string, res *specs.LinuxResources) error {
	if res == nil {
		return fmt.Errorf("update container %q: no resources: %w", id, errdefs.ErrInvalidArgument)
	}
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if (c.lc == nil && c.oci == nil) || c.status().Status == StatusStopped {
		return fmt.Errorf("update container %q: not running: %w", id, errdefs.ErrFailedPrecondition)
	}
	res = withoutDevices(res)
	if err := memoryFits(c, res); err != nil {
		return fmt.Errorf("update container %q: %w", id, err)
	}
	if c.oci != nil {
		return m.updateOCI(c, res)
	}
	config := c.lc.Config()
	cg, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{
		CgroupName:       id,
		UseSystemdCgroup: m.opts.SystemdCgroup,
		Spec:             &specs.Spec{Linux: &specs.Linux{Resources: res}},
	}, nil)
	if err != nil {
		return fmt.Errorf("convert resources of %q: %w", id, err)
	}
	cg.Resources.Devices = config.Cgroups.Resources.Devices
	cg.Resources.SkipDevices = config.Cgroups.Resources.SkipDevices
	// Config() copies the config but shares its *Cgroups with the container: writing the new
	// resources through that pointer would make them the container's before Set ran, and a
	// failed Set would "restore" the very limits it failed to apply.
	cgroupsCopy := *config.Cgroups
	cgroupsCopy.Resources = cg.Resources
	config.Cgroups = &cgroupsCopy
	if err := c.lc.Set(config); err != nil {
		return fmt.Errorf("update container %q: %w", id, err)
	}
	return nil
}

// memoryFits refuses a memory limit below what the container uses now, before anything is
// written (see cgroups.MemoryFits for what the kernel would do instead).
func memoryFits(c *container, res *specs.LinuxResources) error {
	if res.Memory == nil || res.Memory.Limit == nil {
		return nil
	}
	return cgroups.MemoryFits(c.cgroupPaths, *res.Memory.Limit)
}

func withoutDevices(res *specs.LinuxResources) *specs.LinuxResources {
	cp := *res
	cp.Devices = nil
	return &cp
}
