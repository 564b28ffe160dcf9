// The constructor half of package podns; see podns.go. It runs while the process is still
// single-threaded, before the Go runtime starts.
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#define ENV_USERNS_FD "_BERTH_PODNS_USERNS_FD"
#define ENV_REPORT_FD "_BERTH_PODNS_REPORT_FD"
#define ENV_CGROUP_PROCS "_BERTH_PODNS_CGROUP_PROCS"

// envfd reads a descriptor number from name: -1 when unset, -2 when malformed.
static int envfd(const char *name)
{
	const char *v = getenv(name);
	if (v == NULL || *v == '\0')
		return -1;
	char *end;
	long fd = strtol(v, &end, 10);
	if (*end != '\0' || fd < 0 || fd > 65535)
		return -2;
	return (int)fd;
}

static void fail(int report, const char *what)
{
	if (report >= 0)
		dprintf(report, "error %s: %s\n", what, strerror(errno));
	_exit(1);
}

// join_cgroups writes 0 (this process) to each cgroup.procs file in the colon-separated list,
// while still the host's root: the init forked below is born in the pod's cgroup.
static int join_cgroups(const char *list)
{
	char *copy = strdup(list);
	if (copy == NULL)
		return -1;
	char *save = NULL;
	for (char *f = strtok_r(copy, ":", &save); f != NULL; f = strtok_r(NULL, ":", &save)) {
		int fd = open(f, O_WRONLY | O_CLOEXEC);
		if (fd < 0 || write(fd, "0", 1) != 1) {
			int e = errno;
			if (fd >= 0)
				close(fd);
			free(copy);
			errno = e;
			return -1;
		}
		close(fd);
	}
	free(copy);
	return 0;
}

void berth_podns_enter(void)
{
	int userns = envfd(ENV_USERNS_FD);
	if (userns == -1)
		return;
	int report = envfd(ENV_REPORT_FD);
	const char *procs = getenv(ENV_CGROUP_PROCS);
	unsetenv(ENV_USERNS_FD);
	unsetenv(ENV_REPORT_FD);
	if (userns < 0 || report < 0) {
		errno = EINVAL;
		fail(report, "bad descriptor environment");
	}
	if (procs != NULL && *procs != '\0' && join_cgroups(procs) < 0)
		fail(report, "join pod cgroup");
	unsetenv(ENV_CGROUP_PROCS);

	if (setns(userns, CLONE_NEWUSER) < 0)
		fail(report, "join user namespace");
	close(userns);
	// Become the namespace's root (the mapped host range), not an unmapped host id: the
	// init then shows as root inside the pod. Groups first, while we may still set them.
	if (setgroups(0, NULL) < 0)
		fail(report, "clear groups");
	if (setresgid(0, 0, 0) < 0)
		fail(report, "set gid 0");
	if (setresuid(0, 0, 0) < 0)
		fail(report, "set uid 0");
	// Changing ids cleared the dumpable flag, which would make /proc/<pid> of the init
	// owned by the host's root and unreadable from inside the pod.
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
		fail(report, "set dumpable");
	// The new pid namespace is owned by the user namespace we are in now.
	if (unshare(CLONE_NEWPID) < 0)
		fail(report, "unshare pid namespace");

	pid_t pid = fork();
	if (pid < 0)
		fail(report, "fork");
	if (pid > 0) {
		// The shim (a child subreaper) inherits the child when we exit.
		dprintf(report, "pid %d\n", (int)pid);
		_exit(0);
	}
	close(report);
}
