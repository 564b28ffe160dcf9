/*
 * berth-pod-init: PID 1 of a pod's shared PID namespace. It holds the namespace open for the
 * pod's containers, reaps the orphans reparented to it, and exits on SIGTERM or SIGINT.
 *
 * It is the Go shim's "pod-init" mode (pkg/runtime.PodInitMain) as a small static program:
 * a Go runtime costs each pod about 1 MiB of memory and a few milliseconds of start-up for a
 * process that only ever waits. The shim starts it (pkg/runtime/podinit.go) with:
 *
 *	BERTH_POD_INIT_CGROUP_DIRS  newline-separated cgroup directories to move itself into,
 *	                            before anything else; it creates none (a cgroup already
 *	                            removed means the pod is gone: exit 1).
 *
 * Build: gcc -static -Os (see the Makefile). Stdio is /dev/null; errors go to stderr anyway.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static int join_cgroup(const char *dir)
{
	char path[4096];
	int fd, n;

	n = snprintf(path, sizeof(path), "%s/cgroup.procs", dir);
	if (n < 0 || (size_t)n >= sizeof(path)) {
		fprintf(stderr, "berth-pod-init: cgroup path too long: %s\n", dir);
		return -1;
	}
	fd = open(path, O_WRONLY | O_CLOEXEC);
	if (fd < 0) {
		fprintf(stderr, "berth-pod-init: join cgroup %s: %s\n", dir, strerror(errno));
		return -1;
	}
	/* "0" is the writing process. */
	if (write(fd, "0", 1) != 1) {
		fprintf(stderr, "berth-pod-init: join cgroup %s: %s\n", dir, strerror(errno));
		close(fd);
		return -1;
	}
	close(fd);
	return 0;
}

static int join_cgroups(char *dirs)
{
	char *save = NULL, *dir;

	for (dir = strtok_r(dirs, "\n", &save); dir; dir = strtok_r(NULL, "\n", &save)) {
		if (*dir && join_cgroup(dir) < 0)
			return -1;
	}
	return 0;
}

int main(void)
{
	sigset_t set;
	char *dirs = getenv("BERTH_POD_INIT_CGROUP_DIRS");

	/* Blocked before anything: a SIGTERM that arrives early is then only pending. */
	sigemptyset(&set);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return 1;
	if (dirs && join_cgroups(dirs) < 0)
		return 1;
	for (;;) {
		int sig = sigwaitinfo(&set, NULL);

		if (sig < 0) {
			if (errno == EINTR)
				continue;
			return 1;
		}
		if (sig == SIGTERM || sig == SIGINT)
			return 0;
		while (waitpid(-1, NULL, WNOHANG) > 0)
			;
	}
}
