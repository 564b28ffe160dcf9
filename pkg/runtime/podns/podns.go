// Package podns starts the pod init of a pod that has its own user namespace: before the Go
// runtime starts any thread, the re-executed pod init joins the pod's user namespace and
// makes its pid namespace there, which Go code cannot do (setns(2) refuses to move a
// multi-threaded process into a user namespace).
//
// Importing the package links in a constructor that does nothing unless EnvUserNSFD is set.
// With it set, the constructor first joins the cgroups whose cgroup.procs files EnvCgroupProcs
// lists (colon-separated; while still the host's root, so that the init is born in the pod's
// cgroup and no killed shim can leave it outside), then joins that user namespace, becomes root in it, unshares the
// pid namespace (which then belongs to the pod's user namespace, as runc needs to mount proc
// for the containers that join it), forks, and reports the child's pid on the EnvReportFD
// descriptor as "pid <n>\n" (or "error <text>\n") before the parent exits. The child, PID 1
// of the new pid namespace, goes on into the Go program: the pod init.
package podns

/*
#cgo CFLAGS: -Wall
extern void berth_podns_enter(void);
void __attribute__((constructor)) berth_podns_init(void) {
	berth_podns_enter();
}
*/
import "C"

// Environment variables that hand the constructor its descriptors; the names are repeated in
// podns.c.
const (
	EnvUserNSFD = "_BERTH_PODNS_USERNS_FD"
	EnvReportFD = "_BERTH_PODNS_REPORT_FD"
	// EnvCgroupProcs lists the cgroup.procs files to write 0 to, colon-separated.
	EnvCgroupProcs = "_BERTH_PODNS_CGROUP_PROCS"
)
