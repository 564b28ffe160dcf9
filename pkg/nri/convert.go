package nri

import (
	"slices"

	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// FillFromSpec copies what NRI shows of a container's OCI spec (args, env, mounts, hooks,
// rlimits and the Linux part) into ctr; a nil spec leaves ctr as it is.
func FillFromSpec(ctr *api.Container, sp *specs.Spec) {
	if sp == nil {
		return
	}
	if p := sp.Process; p != nil {
		ctr.Args = slices.Clone(p.Args)
		ctr.Env = slices.Clone(p.Env)
		for _, r := range p.Rlimits {
			ctr.Rlimits = append(ctr.Rlimits, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
		}
		ctr.User = &api.User{Uid: p.User.UID, Gid: p.User.GID, AdditionalGids: slices.Clone(p.User.AdditionalGids)}
	}
	ctr.Mounts = api.FromOCIMounts(sp.Mounts)
	ctr.Hooks = api.FromOCIHooks(sp.Hooks)
	if l := sp.Linux; l != nil {
		lc := &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, sp.Annotations),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      l.Sysctl,
		}
		if p := sp.Process; p != nil {
			if p.OOMScoreAdj != nil {
				lc.OomScoreAdj = api.Int(*p.OOMScoreAdj)
			}
			lc.IoPriority = api.FromOCILinuxIOPriority(p.IOPriority)
		}
		ctr.Linux = lc
	}
}
