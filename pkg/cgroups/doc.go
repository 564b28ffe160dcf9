// Package cgroups owns berth's view of the node's cgroups: mode detection, driver validation,
// pod cgroup paths (create, remove with leftover kill), stats, OOM counts and CRI resource conversion.
//
// Modes (DetectMode): Legacy is cgroup v1 only; Hybrid is v1 controllers plus a controller-less
// cgroup2 mount at /sys/fs/cgroup/unified (resources still go through v1); Unified is v2 only.
//
// berth lays cgroups out as cgroupfs does, through the opencontainers/cgroups fs (v1) and fs2
// (v2) managers. A pod path such as "/kubepods/burstable/pod<uid>" is relative to every
// hierarchy root: on Legacy and Hybrid nodes it exists under each mounted controller
// (/sys/fs/cgroup/<controller>/<path>, plus name=systemd and, on Hybrid, the unified mount); on
// Unified nodes it is one directory under /sys/fs/cgroup. A container's cgroup is
// ContainerPath(pod, id), below its pod, so removing the pod removes it too. The pod init lives
// in PodInitPath(pod), a leaf beside the containers: cgroup v2 allows processes only in leaves
// once a cgroup delegates domain controllers, so the pod cgroup itself holds no process. On
// Unified nodes EnsurePod enables cpu, cpuset, io, memory, pids and hugetlb (those offered) in
// cgroup.subtree_control from the root down to the pod, while the pod is still empty, so that
// container cgroups are domain cgroups that take limits. v1 uses the same layout.
//
// Drivers (ValidateDriver): "cgroupfs" always works; "systemd" only when systemd is PID 1,
// offers the cpu, memory and pids controllers and answers on D-Bus (ConnectSystemd), because
// that driver asks systemd for the cgroups: pod slices (EnsureSlice), container and pod init
// scopes (created by the shims through runc's systemd driver, named ScopePath/RuncScopePath),
// removed by stopping the unit (RemoveUnit).
//
// Paths (NormalizeParent): the CRI cgroup_parent is normalised before use and must fit the
// driver: a path under cgroupfs, a slice under systemd, by name
// ("kubepods-burstable-pod<uid>.slice", expanded to
// "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice") or by that
// expanded path (what the kubelet sends); a path that is not where systemd puts its last slice
// is refused. An empty parent becomes DefaultParent ("/berth") or "/berth.slice". Relative
// paths, ".." and the root itself are refused with errdefs.ErrInvalidArgument, since the path
// is joined onto hierarchy roots and Remove kills whatever is inside.
//
// Resources (ToResources): CRI zero values mean "unset"; the CRI swap limit is memory+swap
// (v1 memsw semantics, as in the OCI spec); Unified entries are refused unless the node is
// Unified.
package cgroups
