package main

import (
	"fmt"
	"os"

	"github.com/berth-runtime/berth/test/fixture"
)

// Users and groups of the upstream busybox image (FROM busybox for every cri-tools test
// image): critest resolves "nobody" and "www-data" by name.
const (
	busyboxPasswd = "root:x:0:0:root:/root:/bin/sh\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/bin/false\n" +
		"bin:x:2:2:bin:/bin:/bin/false\n" +
		"sys:x:3:3:sys:/dev:/bin/false\n" +
		"sync:x:4:100:sync:/bin:/bin/sync\n" +
		"mail:x:8:8:mail:/var/spool/mail:/bin/false\n" +
		"www-data:x:33:33:www-data:/var/www:/bin/false\n" +
		"operator:x:37:37:Operator:/var:/bin/false\n" +
		"nobody:x:65534:65534:nobody:/home:/bin/false\n"
	busyboxGroup = "root:x:0:\n" +
		"daemon:x:1:\n" +
		"bin:x:2:\n" +
		"sys:x:3:\n" +
		"adm:x:4:\n" +
		"tty:x:5:\n" +
		"disk:x:6:\n" +
		"lp:x:7:\n" +
		"mail:x:8:\n" +
		"kmem:x:9:\n" +
		"wheel:x:10:root\n" +
		"cdrom:x:11:\n" +
		"dialout:x:18:\n" +
		"floppy:x:19:\n" +
		"video:x:28:\n" +
		"audio:x:29:\n" +
		"tape:x:32:\n" +
		"www-data:x:33:\n" +
		"operator:x:37:\n" +
		"utmp:x:43:\n" +
		"plugdev:x:46:\n" +
		"staff:x:50:\n" +
		"lock:x:54:\n" +
		"netdev:x:82:\n" +
		"users:x:100:\n" +
		"nogroup:x:65534:\n"
)

// pgrepScript stands in for procps pgrep, which Debian's busybox lacks: critest runs
// "pgrep sleep || true" and wants an empty stderr. Exact process names only (via pidof).
const pgrepScript = `#!/bin/sh
# pgrep stand-in (berth critest images): exact process names, one pid per line.
[ $# -ge 1 ] || { echo "usage: pgrep NAME" >&2; exit 2; }
pids=$(pidof "$1") || exit 1
for p in $pids; do echo "$p"; done
`

// ipcsScript stands in for util-linux ipcs, which Debian's busybox lacks: critest's host IPC
// tests look for a segment id in "ipcs -m". Only shared memory is listed.
const ipcsScript = `#!/bin/sh
# ipcs stand-in (berth critest images): shared memory segments of this IPC namespace.
echo "------ Shared Memory Segments --------"
echo "key        shmid      owner      perms      bytes      nattch     status"
awk 'NR > 1 { printf "0x%08x %-10s %-10s %-10s %-10s %-10s\n", $1, $2, $8, $3, $4, $7 }' /proc/sysvipc/shm
`

// nginxScript stands in for nginx with busybox httpd. critest expects (security_context_linux.go)
// a process named nginx whose pid is in /var/run/nginx.pid, and "master process" in pid 1's
// command line when the container has its own pid namespace: the shell stays pid 1 with that
// title as its argument, and runs httpd through the /usr/sbin/nginx symlink so that the
// kernel names the process nginx while busybox still dispatches on argv[0] "httpd".
const nginxScript = `#!/bin/sh
# nginx stand-in (berth critest images). The argument is only the process title.
port="${NGINX_PORT:-80}"
mkdir -p /var/run
(exec -a httpd /usr/sbin/nginx -f -v -p "$port" -h /usr/share/nginx/html) &
pid=$!
echo "$pid" > /var/run/nginx.pid.tmp && mv /var/run/nginx.pid.tmp /var/run/nginx.pid
trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT QUIT
echo "nginx: serving /usr/share/nginx/html on port $port (busybox httpd, pid $pid)"
wait "$pid"
`

// httpdScript stands in for Apache httpd-foreground: critest checks the log mentions httpd.
const httpdScript = `#!/bin/sh
# httpd-foreground stand-in (berth critest images): busybox httpd in the foreground.
port="${HTTPD_PORT:-80}"
echo "httpd: serving /usr/local/apache2/htdocs on port $port (busybox httpd)"
httpd -f -v -p "$port" -h /usr/local/apache2/htdocs &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid"; exit 0' TERM INT
wait "$pid"
`

// pauseScript stands in for the pause binary: sleep until SIGTERM or SIGINT, then exit 0.
const pauseScript = `#!/bin/sh
# pause stand-in (berth critest images).
trap 'kill "$sleeper" 2>/dev/null; wait "$sleeper"; exit 0' TERM INT
while :; do
	sleep 3600 &
	sleeper=$!
	wait "$sleeper"
done
`

// etcFiles is /etc/passwd and /etc/group: upstream busybox's plus extra lines.
func etcFiles(extraPasswd, extraGroup string) []fixture.File {
	return []fixture.File{
		fixture.Reg("/etc/passwd", busyboxPasswd+extraPasswd, 0o644),
		fixture.Reg("/etc/group", busyboxGroup+extraGroup, 0o644),
	}
}

// predefinedGroupFiles mirrors images/image-predefined-group: adduser -u 1000 default-user,
// addgroup -g 50000 group-defined-in-image, default-user added to it.
func predefinedGroupFiles() []fixture.File {
	return append(etcFiles(
		"default-user:x:1000:1000:Linux User,,,:/home/default-user:/bin/sh\n",
		"default-user:x:1000:\ngroup-defined-in-image:x:50000:default-user\n"),
		fixture.Dir("/home/default-user", 0o755, 1000, 1000))
}

// baseOpts are what every catalogue image carries on top of the fixture busybox. busybox is
// the binary's bytes: upstream busybox makes its applets hard links of /bin/busybox, so a
// mask over /bin/ls (critest's MaskedPaths spec) hides ls alone; the fixture's applets are
// symlinks, which a /dev/null bind mount would follow onto busybox itself, taking sh with it.
// A regular-file copy at /bin/ls behaves like the hard link.
func baseOpts(etc []fixture.File, busybox []byte) []fixture.Option {
	files := append([]fixture.File{
		{Path: "/bin/ls", Data: busybox, Mode: 0o755},
		fixture.Reg("/usr/bin/pgrep", pgrepScript, 0o755),
		fixture.Reg("/usr/bin/ipcs", ipcsScript, 0o755),
		fixture.Dir("/var/www", 0o755, 33, 33),
	}, etc...)
	return []fixture.Option{
		fixture.WithFiles(files...),
		fixture.WithLabel("io.berth.critest", "true"),
		fixture.WithCmd("sh"),
	}
}

func nginxOpts(kindName string, port int) []fixture.Option {
	return []fixture.Option{
		kind(kindName),
		fixture.WithFiles(
			fixture.Reg("/docker-entrypoint.sh", nginxScript, 0o755),
			fixture.Symlink("/usr/sbin/nginx", "/bin/busybox"),
			fixture.Reg("/usr/share/nginx/html/index.html", "<!DOCTYPE html>\n<html><body><h1>Welcome to nginx!</h1></body></html>\n", 0o644),
			fixture.Dir("/var/run", 0o755, 0, 0),
		),
		fixture.WithEnv(fmt.Sprintf("NGINX_PORT=%d", port)),
		fixture.WithEntrypoint("/docker-entrypoint.sh"),
		fixture.WithCmd("nginx: master process nginx -g daemon off;"),
		fixture.WithStopSignal("SIGTERM"),
	}
}

func httpdOpts() []fixture.Option {
	return []fixture.Option{
		kind("e2e-httpd"),
		fixture.WithFiles(
			fixture.Reg("/usr/local/bin/httpd-foreground", httpdScript, 0o755),
			fixture.Reg("/usr/local/apache2/htdocs/index.html", "<html><body><h1>It works!</h1></body></html>\n", 0o644),
		),
		fixture.WithEnv("HTTPD_PORT=80"),
		fixture.WithWorkingDir("/usr/local/apache2"),
		fixture.WithCmd("httpd-foreground"),
	}
}

func pauseOpts() []fixture.Option {
	return []fixture.Option{
		kind("pause"),
		fixture.WithFiles(fixture.File{Path: "/pause", Data: []byte(pauseScript), Mode: os.FileMode(0o755)}),
		fixture.WithUser("65535:65535"),
		fixture.WithEntrypoint("/pause"),
		fixture.WithCmd(),
	}
}
