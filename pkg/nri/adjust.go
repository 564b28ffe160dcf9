package nri

import (
	"fmt"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Adjust applies the plugins' merged adjustment to a container's spec before it is written.
// Keys marked for removal (api.MarkForRemoval) delete. What berth cannot apply (CDI devices,
// namespaces, seccomp policies, net devices, RDT, block I/O classes, schedulers, memory
// policies) is refused with errdefs.ErrNotImplemented rather than dropped silently: a plugin
// that asked for it relies on it.
func Adjust(sp *specs.Spec, adj *api.ContainerAdjustment) error {
	if adj == nil {
		return nil
	}
	if err := refuseUnsupported(adj); err != nil {
		return err
	}
	if sp.Process == nil {
		sp.Process = &specs.Process{}
	}
	if sp.Linux == nil {
		sp.Linux = &specs.Linux{}
	}
	adjustAnnotations(sp, adj.GetAnnotations())
	adjustEnv(sp.Process, adj.GetEnv())
	if args := adj.GetArgs(); len(args) > 0 {
		sp.Process.Args = slices.Clone(args)
	}
	adjustHooks(sp, adj.GetHooks())
	adjustMounts(sp, adj.GetMounts())
	adjustRlimits(sp.Process, adj.GetRlimits())
	l := adj.GetLinux()
	adjustDevices(sp.Linux, l.GetDevices())
	if p := l.GetCgroupsPath(); p != "" {
		sp.Linux.CgroupsPath = p
	}
	if o := l.GetOomScoreAdj(); o != nil {
		v := int(o.GetValue())
		sp.Process.OOMScoreAdj = &v
	}
	if p := l.GetIoPriority(); p != nil {
		sp.Process.IOPriority = p.ToOCI()
	}
	if err := adjustSysctl(sp.Linux, l.GetSysctl()); err != nil {
		return err
	}
	adjustResources(sp.Linux, l.GetResources())
	return nil
}

func refuseUnsupported(adj *api.ContainerAdjustment) error {
	l := adj.GetLinux()
	res := l.GetResources()
	var what []string
	for _, c := range []struct {
		set  bool
		name string
	}{
		{len(adj.GetCDIDevices()) > 0, "CDI devices"},
		{len(l.GetNamespaces()) > 0, "namespaces"},
		{l.GetSeccompPolicy() != nil, "seccomp policy"},
		{len(l.GetNetDevices()) > 0, "net devices"},
		{l.GetScheduler() != nil, "scheduler"},
		{l.GetRdt() != nil || res.GetRdtClass() != nil, "RDT"},
		{res.GetBlockioClass() != nil, "block I/O class"},
		{l.GetMemoryPolicy() != nil, "memory policy"},
	} {
		if c.set {
			what = append(what, c.name)
		}
	}
	if len(what) > 0 {
		return fmt.Errorf("cannot apply %s: %w", strings.Join(what, ", "), errdefs.ErrNotImplemented)
	}
	return nil
}

func adjustAnnotations(sp *specs.Spec, ann map[string]string) {
	for k, v := range ann {
		if key, del := api.IsMarkedForRemoval(k); del {
			delete(sp.Annotations, key)
			continue
		}
		if sp.Annotations == nil {
			sp.Annotations = map[string]string{}
		}
		sp.Annotations[k] = v
	}
}

// adjustEnv replaces variables in place (keeping the image's order), removes the marked ones
// and appends new ones in the plugin's order.
func adjustEnv(p *specs.Process, env []*api.KeyValue) {
	if len(env) == 0 {
		return
	}
	mod := map[string]*api.KeyValue{}
	for _, e := range env {
		key, _ := api.IsMarkedForRemoval(e.GetKey())
		mod[key] = e
	}
	out := make([]string, 0, len(p.Env)+len(env))
	for _, kv := range p.Env {
		k, _, _ := strings.Cut(kv, "=")
		m, ok := mod[k]
		if !ok {
			out = append(out, kv)
			continue
		}
		delete(mod, k)
		if _, del := m.IsMarkedForRemoval(); !del {
			out = append(out, m.ToOCI())
		}
	}
	for _, e := range env {
		if _, del := e.IsMarkedForRemoval(); del {
			continue
		}
		if m, ok := mod[e.GetKey()]; ok && m == e {
			out = append(out, e.ToOCI())
		}
	}
	p.Env = out
}

func adjustHooks(sp *specs.Spec, h *api.Hooks) {
	if h == nil {
		return
	}
	if sp.Hooks == nil {
		sp.Hooks = &specs.Hooks{}
	}
	add := func(dst *[]specs.Hook, src []*api.Hook) {
		for _, x := range src {
			*dst = append(*dst, x.ToOCI())
		}
	}
	add(&sp.Hooks.Prestart, h.GetPrestart()) //nolint:staticcheck // NRI still carries prestart hooks.
	add(&sp.Hooks.CreateRuntime, h.GetCreateRuntime())
	add(&sp.Hooks.CreateContainer, h.GetCreateContainer())
	add(&sp.Hooks.StartContainer, h.GetStartContainer())
	add(&sp.Hooks.Poststart, h.GetPoststart())
	add(&sp.Hooks.Poststop, h.GetPoststop())
}

// adjustMounts replaces mounts by destination and keeps parents before children, so a
// plugin's mount over /a does not hide the CRI's /a/b.
func adjustMounts(sp *specs.Spec, mounts []*api.Mount) {
	if len(mounts) == 0 {
		return
	}
	for _, m := range mounts {
		dst, del := m.IsMarkedForRemoval()
		sp.Mounts = slices.DeleteFunc(sp.Mounts, func(o specs.Mount) bool {
			return filepath.Clean(o.Destination) == filepath.Clean(dst)
		})
		if !del {
			sp.Mounts = append(sp.Mounts, m.ToOCI(nil))
		}
	}
	sort.SliceStable(sp.Mounts, func(i, j int) bool {
		return depth(sp.Mounts[i].Destination) < depth(sp.Mounts[j].Destination)
	})
}

func depth(p string) int { return strings.Count(filepath.Clean(p), "/") }

// adjustRlimits sets each limit, replacing one of the same type.
func adjustRlimits(p *specs.Process, limits []*api.POSIXRlimit) {
	for _, l := range limits {
		if l == nil {
			continue
		}
		p.Rlimits = slices.DeleteFunc(p.Rlimits, func(o specs.POSIXRlimit) bool { return o.Type == l.GetType() })
		p.Rlimits = append(p.Rlimits, specs.POSIXRlimit{Type: l.GetType(), Hard: l.GetHard(), Soft: l.GetSoft()})
	}
}

// adjustDevices adds device nodes and allows them in the device cgroup.
func adjustDevices(l *specs.Linux, devs []*api.LinuxDevice) {
	for _, d := range devs {
		path, del := d.IsMarkedForRemoval()
		l.Devices = slices.DeleteFunc(l.Devices, func(o specs.LinuxDevice) bool { return o.Path == path })
		if del {
			continue
		}
		l.Devices = append(l.Devices, d.ToOCI())
		if l.Resources == nil {
			l.Resources = &specs.LinuxResources{}
		}
		major, minor := d.GetMajor(), d.GetMinor()
		l.Resources.Devices = append(l.Resources.Devices, specs.LinuxDeviceCgroup{
			Allow: true, Type: d.GetType(), Major: &major, Minor: &minor, Access: d.AccessString(),
		})
	}
}

func adjustSysctl(l *specs.Linux, sysctl map[string]string) error {
	for k, v := range sysctl {
		if key, del := api.IsMarkedForRemoval(k); del {
			delete(l.Sysctl, key)
			continue
		}
		if strings.ContainsAny(k, "=\n") {
			return fmt.Errorf("sysctl %q: %w", k, errdefs.ErrInvalidArgument)
		}
		if l.Sysctl == nil {
			l.Sysctl = map[string]string{}
		}
		l.Sysctl[k] = v
	}
	return nil
}

// adjustResources overrides the limits the plugins set and keeps the rest.
func adjustResources(l *specs.Linux, r *api.LinuxResources) {
	if r == nil {
		return
	}
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	res := l.Resources
	if m := r.GetMemory(); m != nil {
		if res.Memory == nil {
			res.Memory = &specs.LinuxMemory{}
		}
		setInt64(&res.Memory.Limit, m.GetLimit())
		setInt64(&res.Memory.Reservation, m.GetReservation())
		setInt64(&res.Memory.Swap, m.GetSwap())
		setInt64(&res.Memory.Kernel, m.GetKernel()) //nolint:staticcheck // still in the spec.
		setInt64(&res.Memory.KernelTCP, m.GetKernelTcp())
		if v := m.GetSwappiness(); v != nil {
			x := v.GetValue()
			res.Memory.Swappiness = &x
		}
		if v := m.GetDisableOomKiller(); v != nil {
			x := v.GetValue()
			res.Memory.DisableOOMKiller = &x
		}
		if v := m.GetUseHierarchy(); v != nil {
			x := v.GetValue()
			res.Memory.UseHierarchy = &x
		}
	}
	if c := r.GetCpu(); c != nil {
		if res.CPU == nil {
			res.CPU = &specs.LinuxCPU{}
		}
		setUint64(&res.CPU.Shares, c.GetShares())
		setInt64(&res.CPU.Quota, c.GetQuota())
		setUint64(&res.CPU.Period, c.GetPeriod())
		setInt64(&res.CPU.RealtimeRuntime, c.GetRealtimeRuntime())
		setUint64(&res.CPU.RealtimePeriod, c.GetRealtimePeriod())
		if c.GetCpus() != "" {
			res.CPU.Cpus = c.GetCpus()
		}
		if c.GetMems() != "" {
			res.CPU.Mems = c.GetMems()
		}
	}
	if p := r.GetPids(); p != nil {
		limit := p.GetLimit()
		res.Pids = &specs.LinuxPids{Limit: &limit}
	}
	for _, h := range r.GetHugepageLimits() {
		res.HugepageLimits = slices.DeleteFunc(res.HugepageLimits, func(o specs.LinuxHugepageLimit) bool { return o.Pagesize == h.GetPageSize() })
		res.HugepageLimits = append(res.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.GetPageSize(), Limit: h.GetLimit()})
	}
	for k, v := range r.GetUnified() {
		if res.Unified == nil {
			res.Unified = map[string]string{}
		}
		res.Unified[k] = v
	}
	for _, d := range r.GetDevices() {
		res.Devices = append(res.Devices, specs.LinuxDeviceCgroup{
			Allow: d.GetAllow(), Type: d.GetType(), Major: d.GetMajor().Get(), Minor: d.GetMinor().Get(), Access: d.GetAccess(),
		})
	}
}

func setInt64(dst **int64, v *api.OptionalInt64) {
	if v != nil {
		x := v.GetValue()
		*dst = &x
	}
}

func setUint64(dst **uint64, v *api.OptionalUInt64) {
	if v != nil {
		x := v.GetValue()
		*dst = &x
	}
}
