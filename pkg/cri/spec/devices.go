package spec

import (
	"fmt"
	"path"
	"strings"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Devices returns the device nodes to create and the device cgroup rules. The rules start with
// deny-all; runc's specconv then appends its own allow list (null, zero, full, random, urandom,
// tty, ptmx, /dev/pts/*, tun and mknod of anything) and creates those nodes, so they are not
// repeated here. Privileged containers get every host device and an allow-all rule.
func Devices(cfg *runtimeapi.ContainerConfig, privileged bool, lookup DeviceLookup) ([]specs.LinuxDevice, []specs.LinuxDeviceCgroup, error) {
	var devs []specs.LinuxDevice
	rules := []specs.LinuxDeviceCgroup{{Allow: false, Access: "rwm"}}

	if privileged {
		host, err := lookup.LookupDevices("/dev")
		if err != nil {
			return nil, nil, fmt.Errorf("list host devices: %w", err)
		}
		devs = append(devs, host...)
		rules = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	}

	for _, d := range cfg.GetDevices() {
		perms := d.GetPermissions()
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return nil, nil, fmt.Errorf("device %q: invalid permissions %q: %w", d.GetHostPath(), perms, errdefs.ErrInvalidArgument)
		}
		dst := d.GetContainerPath()
		if dst == "" {
			dst = d.GetHostPath()
		}
		if !path.IsAbs(dst) || !path.IsAbs(d.GetHostPath()) {
			return nil, nil, fmt.Errorf("device %q -> %q: paths must be absolute: %w", d.GetHostPath(), dst, errdefs.ErrInvalidArgument)
		}
		found, err := lookup.LookupDevices(d.GetHostPath())
		if err != nil {
			return nil, nil, fmt.Errorf("device %q: %w", d.GetHostPath(), err)
		}
		if len(found) == 0 {
			return nil, nil, fmt.Errorf("device %q: no device nodes: %w", d.GetHostPath(), errdefs.ErrInvalidArgument)
		}
		for _, hd := range found {
			// A directory (e.g. /dev/snd) maps every node below it under the container path.
			hd.Path = path.Join(dst, strings.TrimPrefix(hd.Path, path.Clean(d.GetHostPath())))
			devs = replaceDevice(devs, hd)
			if !privileged {
				rules = append(rules, specs.LinuxDeviceCgroup{
					Allow: true, Type: hd.Type, Major: ptr(hd.Major), Minor: ptr(hd.Minor), Access: perms,
				})
			}
		}
	}
	return devs, rules, nil
}

// replaceDevice adds d, replacing a node at the same container path: runc refuses duplicates.
func replaceDevice(devs []specs.LinuxDevice, d specs.LinuxDevice) []specs.LinuxDevice {
	for i := range devs {
		if devs[i].Path == d.Path {
			devs[i] = d
			return devs
		}
	}
	return append(devs, d)
}
