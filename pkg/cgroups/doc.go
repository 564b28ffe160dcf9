// Package cgroups owns berth's view of the node's cgroups: mode detection, driver validation,
// pod cgroup paths (create, remove with leftover kill), stats, OOM counts and CRI resource conversion.
//
// berth drives cgroups through the cgroupfs layout only (the opencontainers/cgroups fs and fs2
// managers). A pod path such as "/kubepods/burstable/pod<uid>" is relative to every hierarchy
// root: on cgroup v1 and hybrid nodes it is created under each mounted controller
// (/sys/fs/cgroup/<controller>/<path>, plus name=systemd and the controller-less unified mount);
// on a unified node it is one directory under /sys/fs/cgroup.
//
// The "systemd" driver is accepted only when systemd is PID 1; critest and kubelets that do not
// know the driver still send systemd-style slice names ("kubepods-burstable-pod<uid>.slice"),
// which NormalizeParent expands to the path systemd would use
// ("/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid>.slice") so they work
// under cgroupfs too.
package cgroups
