#!/bin/sh
# Installs berth as a systemd service, or removes it (--uninstall). `make install` and
# `make uninstall` call it; it is plain sh so that it also runs on a node without Go or make
# (the test VM runs it from its share).
#
#	hack/install.sh [--bin-dir DIR] [--uninstall]
#
# DIR holds berth, berth-shim and berth-pod-init (default ./bin). Installs, each under $DESTDIR (staging) and
# $PREFIX (default /usr/local):
#	$PREFIX/bin/berth, $PREFIX/bin/berth-shim, $PREFIX/bin/berth-pod-init (beside the shim)
#	/etc/systemd/system/berth.service   (hack/systemd/berth.service, ExecStart pointing there)
#	/etc/berth/config.toml              only if none: the cgroup driver fits the node (systemd
#	                                    when systemd is PID 1, cgroupfs otherwise)
#	/etc/crictl.yaml                    only if none: crictl talks to berth's socket
# Idempotent: a second run replaces the binaries and the unit and keeps the configuration.
# Without DESTDIR, on a systemd node, it reloads systemd and enables the unit (it does not start
# or restart it: `systemctl restart berth` does, and containers keep running across it).
# --uninstall stops and disables the unit and removes the binaries and the unit, keeping
# /etc/berth, /etc/crictl.yaml and the state in /var/lib/berth and /run/berth.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
PREFIX=${PREFIX:-/usr/local}
DESTDIR=${DESTDIR:-}
bin_dir=bin
uninstall=false
while [ $# -gt 0 ]; do
	case $1 in
	--bin-dir) bin_dir=$2; shift 2 ;;
	--uninstall) uninstall=true; shift ;;
	*) echo "install.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

bindir=$PREFIX/bin
unit=/etc/systemd/system/berth.service
log() { echo "install: $*"; }

# systemd_live: act on the running systemd only when installing into this root on a systemd node.
systemd_live() { [ -z "$DESTDIR" ] && [ -d /run/systemd/system ]; }

if $uninstall; then
	if systemd_live; then
		systemctl disable --now berth.service >/dev/null 2>&1 || true
	fi
	rm -f "$DESTDIR$bindir/berth" "$DESTDIR$bindir/berth-shim" "$DESTDIR$bindir/berth-pod-init" "$DESTDIR$unit"
	if systemd_live; then systemctl daemon-reload; fi
	log "removed berth, berth-shim, berth-pod-init and $unit (kept /etc/berth, /etc/crictl.yaml and the state)"
	exit 0
fi

for b in berth berth-shim berth-pod-init; do
	[ -x "$bin_dir/$b" ] || { echo "install.sh: $bin_dir/$b is missing (make build)" >&2; exit 1; }
done

# Binaries: copied beside and renamed over, so that a running agent or shim keeps its inode.
mkdir -p "$DESTDIR$bindir"
for b in berth berth-shim berth-pod-init; do
	cp "$bin_dir/$b" "$DESTDIR$bindir/.$b.new"
	chmod 0755 "$DESTDIR$bindir/.$b.new"
	mv -f "$DESTDIR$bindir/.$b.new" "$DESTDIR$bindir/$b"
done
log "installed berth, berth-shim and berth-pod-init in $DESTDIR$bindir"

mkdir -p "$DESTDIR/etc/systemd/system"
sed "s|@BINDIR@|$bindir|g" "$here/systemd/berth.service" >"$DESTDIR$unit.new"
mv -f "$DESTDIR$unit.new" "$DESTDIR$unit"
log "installed $DESTDIR$unit"

if [ ! -e "$DESTDIR/etc/berth/config.toml" ]; then
	driver=cgroupfs
	if [ -d /run/systemd/system ]; then driver=systemd; fi
	mkdir -p "$DESTDIR/etc/berth"
	cat >"$DESTDIR/etc/berth/config.toml" <<CONF
# berth's configuration (README.md lists every setting); written by hack/install.sh.
root = "/var/lib/berth"
state = "/run/berth"
listen = "/run/berth/berth.sock"
log_level = "info"
# The kubelet's cgroupDriver must be the same.
cgroup_driver = "$driver"
CONF
	log "wrote $DESTDIR/etc/berth/config.toml (cgroup_driver = \"$driver\")"
fi

if [ ! -e "$DESTDIR/etc/crictl.yaml" ]; then
	mkdir -p "$DESTDIR/etc"
	printf 'runtime-endpoint: unix:///run/berth/berth.sock\nimage-endpoint: unix:///run/berth/berth.sock\ntimeout: 10\n' \
		>"$DESTDIR/etc/crictl.yaml"
	log "wrote $DESTDIR/etc/crictl.yaml"
fi

if systemd_live; then
	systemctl daemon-reload
	systemctl enable berth.service >/dev/null 2>&1
	log "enabled berth.service; start it with: systemctl start berth"
fi
