package server

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/containerd/errdefs"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// UpdatePodSandboxResources writes the pod-level resources (the sum of the containers' plus
// the pod overhead) to the pod cgroup and records them. The kubelet calls it around its
// UpdateContainerResources calls of a resize, so that the pod cgroup is grown before its
// containers and shrunk after them.
func (s *Service) UpdatePodSandboxResources(ctx context.Context, req *runtimeapi.UpdatePodSandboxResourcesRequest) (*runtimeapi.UpdatePodSandboxResourcesResponse, error) {
	sb, err := s.store.Sandboxes.Resolve(req.GetPodSandboxId())
	if err != nil {
		return nil, fmt.Errorf("update pod sandbox resources: %w", err)
	}
	if req.GetResources() == nil && req.GetOverhead() == nil {
		return nil, fmt.Errorf("update pod sandbox resources %s: no linux resources: %w", sb.ID(), errdefs.ErrInvalidArgument)
	}
	// Exclusive against removal and other updates of the pod: two updates interleaving their
	// writes and records would leave the cgroup and the record disagreeing.
	defer s.sandboxLocks.lock(sb.ID())()
	next := &store.PodResources{
		Resources: store.Resources{LinuxContainerResources: cloneResources(req.GetResources())},
		Overhead:  store.Resources{LinuxContainerResources: cloneResources(req.GetOverhead())},
	}
	if err := s.updatePodResources(ctx, sb, next); err != nil {
		return nil, fmt.Errorf("update pod sandbox resources %s (pod %s): %w", sb.ID(), podName(sb), err)
	}
	s.nriPostUpdatePodSandbox(ctx, sb)
	return &runtimeapi.UpdatePodSandboxResourcesResponse{}, nil
}

// updatePodResources marks next pending, writes it to the pod cgroup and records it. A
// failed write puts the last recorded resources back, so no half-applied update remains.
func (s *Service) updatePodResources(ctx context.Context, sb *store.Sandbox, next *store.PodResources) error {
	md := sb.Metadata()
	st := sb.Status()
	if st.State != store.SandboxReady || st.Removing {
		return fmt.Errorf("pod is not ready: %w", errdefs.ErrFailedPrecondition)
	}
	combined := podCgroupResources(next)
	if _, err := s.cgroups.ToResources(combined); err != nil {
		return err
	}
	if err := s.nriUpdatePodSandbox(ctx, sb, next); err != nil {
		return err
	}
	if err := sb.Update(func(st *store.SandboxStatus) error {
		st.ResourcesPending = next
		return nil
	}); err != nil {
		return err
	}
	if err := s.cgroups.SetPod(md.CgroupParent, combined); err != nil {
		s.restorePodResources(sb)
		return err
	}
	return sb.Update(func(st *store.SandboxStatus) error {
		st.Resources, st.ResourcesPending = next, nil
		return nil
	})
}

// restorePodResources writes the recorded resources back to the pod cgroup after a write
// that failed or was cut short, and clears the pending mark. Before any update the pod
// cgroup holds what the kubelet or the pod config gave it; berth wrote nothing, so there is
// nothing to put back. Best effort: a failure is logged and the mark stays for the next
// startup.
func (s *Service) restorePodResources(sb *store.Sandbox) {
	st := sb.Status()
	if st.ResourcesPending == nil {
		return
	}
	if st.Resources != nil {
		if err := s.cgroups.SetPod(sb.Metadata().CgroupParent, podCgroupResources(st.Resources)); err != nil {
			s.log.Warn("restore pod cgroup resources", "sandbox", sb.ID(), "err", err)
			return
		}
	}
	s.logSandboxUpdate(sb, sb.Update(func(st *store.SandboxStatus) error {
		st.ResourcesPending = nil
		return nil
	}))
}

// podCgroupResources is what the pod cgroup gets: the containers' sum plus the overhead, as
// the kubelet sizes a pod cgroup. Limits add up only where the sum has one (zero is "not set"
// and -1 "unlimited" stay as they are); cpuset and unified files come from the sum.
func podCgroupResources(p *store.PodResources) *runtimeapi.LinuxContainerResources {
	r, o := p.Resources.LinuxContainerResources, p.Overhead.LinuxContainerResources
	if r == nil {
		r = &runtimeapi.LinuxContainerResources{}
	}
	out := cloneResources(r)
	addLimit := func(sum, over int64) int64 {
		if sum > 0 && over > 0 {
			return sum + over
		}
		return sum
	}
	out.CpuShares = addLimit(r.GetCpuShares(), o.GetCpuShares())
	if r.GetCpuShares() == 0 {
		out.CpuShares = o.GetCpuShares()
	}
	if r.GetCpuPeriod() == o.GetCpuPeriod() || o.GetCpuPeriod() == 0 {
		// Quotas are per period: they add up only over the same period.
		out.CpuQuota = addLimit(r.GetCpuQuota(), o.GetCpuQuota())
	}
	out.MemoryLimitInBytes = addLimit(r.GetMemoryLimitInBytes(), o.GetMemoryLimitInBytes())
	out.MemorySwapLimitInBytes = addLimit(r.GetMemorySwapLimitInBytes(), o.GetMemoryLimitInBytes())
	out.HugepageLimits = addHugepages(r.GetHugepageLimits(), o.GetHugepageLimits())
	return out
}

func addHugepages(sum, over []*runtimeapi.HugepageLimit) []*runtimeapi.HugepageLimit {
	if len(sum) == 0 {
		return nil
	}
	limits := map[string]uint64{}
	for _, l := range sum {
		limits[l.GetPageSize()] += l.GetLimit()
	}
	for _, l := range over {
		if _, ok := limits[l.GetPageSize()]; ok {
			limits[l.GetPageSize()] += l.GetLimit()
		}
	}
	var out []*runtimeapi.HugepageLimit
	for _, size := range slices.Sorted(maps.Keys(limits)) {
		out = append(out, &runtimeapi.HugepageLimit{PageSize: size, Limit: limits[size]})
	}
	return out
}

func cloneResources(r *runtimeapi.LinuxContainerResources) *runtimeapi.LinuxContainerResources {
	if r == nil {
		return nil
	}
	return proto.Clone(r).(*runtimeapi.LinuxContainerResources)
}

// podName is the pod's namespace/name for error messages.
func podName(sb *store.Sandbox) string {
	m := sb.Metadata().Config.GetMetadata()
	return m.GetNamespace() + "/" + m.GetName()
}
