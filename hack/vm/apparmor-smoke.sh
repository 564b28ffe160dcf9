#!/bin/sh
# Checks berth's AppArmor RuntimeDefault in the Debian 12 test VM (AppArmor enabled, the apparmor
# package installed): the agent loads berth-default at startup, a RuntimeDefault container runs
# confined by it (enforce) and is denied what the profile denies, and an Unconfined container
# with the same request runs and is not.
#
#	hack/vm/apparmor-smoke.sh          on the host: builds the test image, boots the VM (run.sh)
#
# Inside the VM it runs as "apparmor-smoke.sh --guest". The denial checked is mount(2): both
# containers get CAP_SYS_ADMIN, so only AppArmor tells them apart (runc already masks and
# mounts read-only /proc/sysrq-trigger and friends, whose denial would prove nothing). The
# profile's deny rules are not audited, so the kernel log stays quiet about it.
set -eu

if [ "${1:-}" != --guest ]; then
	cd "$(dirname "$0")/../.."
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	go run ./hack/testimage layout --out "$tmp/busybox.tar" >/dev/null
	VM_BINS="$tmp/busybox.tar hack/vm/apparmor-smoke.sh" VM_TEST="sh /share/bin/apparmor-smoke.sh --guest" \
		hack/vm/run.sh
	exit
fi

SMOKE=apparmor-smoke
# shellcheck source=hack/vm/guest-lib.sh
. /share/bin/guest-lib.sh

echo "kernel: $(uname -r); cmdline: $(cat /proc/cmdline)"
enabled=$(cat /sys/module/apparmor/parameters/enabled 2>/dev/null || echo absent)
echo "apparmor module enabled: $enabled; lsm: $(cat /sys/kernel/security/lsm 2>/dev/null)"
[ "$enabled" = Y ] || fail "apparmor is not enabled in the guest kernel"
echo "apparmor_parser: $(command -v apparmor_parser || echo missing) $(apparmor_parser --version 2>/dev/null | head -n 1)"

start_berth berth.log
echo "berth log:"
grep -i apparmor /share/results/berth.log | sed 's/^/  /'
echo "loaded: $(grep berth-default /sys/kernel/security/apparmor/profiles || echo 'berth-default NOT loaded')"
grep -q '^berth-default (enforce)' /sys/kernel/security/apparmor/profiles || fail "berth-default is not loaded in enforce mode"
echo "status conditions: $(crictl info -o go-template --template '{{range .status.conditions}}{{.type}}={{.status}} {{end}}' 2>&1)"

# A restart finds the profile loaded at its version and leaves it alone.
stop_berth
start_berth berth-restart.log "after a restart"
echo "berth log after a restart:"
grep -i 'apparmor default' /share/results/berth-restart.log | sed 's/^/  /'
grep -q 'apparmor default profile is loaded' /share/results/berth-restart.log || fail "the restarted agent did not find the profile loaded"

berth --root /var/lib/berth --state /run/berth --listen "$sock" images import /share/bin/busybox.tar >/dev/null
cat >/tmp/pod.json <<'EOF'
{"metadata": {"name": "aa", "namespace": "default", "uid": "aa-uid", "attempt": 0},
 "log_directory": "/var/log/pods/aa",
 "linux": {"security_context": {"namespace_options": {"network": 2}}}}
EOF
pod=$(crictl runp /tmp/pod.json 2>/tmp/crictl.err) || fail "runp: $(cat /tmp/crictl.err)"

# run_container NAME APPARMOR: starts a container that reports its profile and tries a mount,
# waits for it to finish, and prints "<profile seen from the host>|<its log>".
run_container() {
	cat >/tmp/ctr.json <<EOF
{"metadata": {"name": "$1"},
 "image": {"image": "docker.io/berth/busybox:latest"},
 "command": ["/bin/sh", "-c", "echo attr: \$(cat /proc/self/attr/current); mkdir -p /mnt/t; if mount -t tmpfs none /mnt/t 2>/tmp/err; then echo mount: allowed; else echo mount: denied: \$(cat /tmp/err); fi; sleep 7"],
 "log_path": "$1.log",
 "linux": {"security_context": {"capabilities": {"add_capabilities": ["SYS_ADMIN"]}, "apparmor": $2}}}
EOF
	ctr=$(crictl create "$pod" /tmp/ctr.json /tmp/pod.json 2>/tmp/crictl.err) || fail "create $1: $(cat /tmp/crictl.err)"
	crictl start "$ctr" >/dev/null 2>/tmp/crictl.err || fail "start $1: $(cat /tmp/crictl.err)"
	# The container's sleep, seen from the host (nothing else in the VM sleeps 7s).
	sleep 1
	for pid in $(pgrep -f '^sleep 7$'); do
		echo "$1: host sees /proc/$pid/attr/current = $(cat "/proc/$pid/attr/current" 2>&1)"
	done
	i=0
	until [ "$(crictl inspect -o go-template --template '{{.status.state}}' "$ctr" 2>/dev/null)" = CONTAINER_EXITED ]; do
		i=$((i + 1))
		[ $i -lt 60 ] || fail "$1 did not exit"
		sleep 1
	done
	sed "s/^/$1: log: /" "/var/log/pods/aa/$1.log"
}

run_container confined '{"profile_type": 0}'
run_container unconfined '{"profile_type": 1}'

# A Localhost profile that is not loaded is refused at create, naming it.
sed 's/"name": "unconfined"/"name": "localhost"/; s/"apparmor": {[^}]*}/"apparmor": {"profile_type": 2, "localhost_ref": "no-such-profile"}/' \
	/tmp/ctr.json >/tmp/ctr-local.json
if crictl create "$pod" /tmp/ctr-local.json /tmp/pod.json >/dev/null 2>/tmp/crictl.err; then
	fail "a container with an unloaded Localhost profile was created"
fi
echo "localhost no-such-profile: refused: $(grep -o 'apparmor profile.*' /tmp/crictl.err | head -n 1)"
grep -q 'no-such-profile.* is not loaded on this node' /tmp/crictl.err || fail "the refusal does not say the profile is not loaded"


c=/var/log/pods/aa/confined.log
u=/var/log/pods/aa/unconfined.log
grep -q 'attr: berth-default (enforce)' $c || fail "the RuntimeDefault container is not confined by berth-default (enforce)"
grep -q 'mount: denied' $c || fail "berth-default let the container mount"
grep -q 'attr: unconfined' $u || fail "the Unconfined container is confined"
grep -q 'mount: allowed' $u || fail "the Unconfined container could not mount"

# Without apparmor_parser (hidden by a bind mount of /dev/null, which is not executable) and with
# the profile unloaded, RuntimeDefault is refused with the fix, and Status says so.
crictl stopp "$pod" >/dev/null 2>&1 || true
crictl rmp "$pod" >/dev/null 2>&1 || true
stop_berth
printf berth-default >/sys/kernel/security/apparmor/.remove
mount --bind /dev/null /usr/sbin/apparmor_parser
start_berth berth-noparser.log "without apparmor_parser"
umount /usr/sbin/apparmor_parser
echo "berth log without apparmor_parser:"
grep -i 'apparmor_parser' /share/results/berth-noparser.log | sed 's/^/  /'
echo "status conditions: $(crictl info -o go-template --template '{{range .status.conditions}}{{.type}}={{.status}} {{.reason}}; {{end}}' 2>&1)"
pod=$(crictl runp /tmp/pod.json 2>/tmp/crictl.err) || fail "runp: $(cat /tmp/crictl.err)"
sed 's/"name": "unconfined"/"name": "default2"/; s/"apparmor": {[^}]*}/"apparmor": {"profile_type": 0}/' /tmp/ctr.json >/tmp/ctr-default.json
if crictl create "$pod" /tmp/ctr-default.json /tmp/pod.json >/dev/null 2>/tmp/crictl.err; then
	fail "a RuntimeDefault container was created without the profile"
fi
echo "runtime default without the profile: refused: $(grep -o 'apparmor runtime default.*' /tmp/crictl.err | head -n 1)"
grep -q 'install the apparmor package' /tmp/crictl.err || fail "the refusal does not say to install the apparmor package"
crictl stopp "$pod" >/dev/null 2>&1 || true
crictl rmp "$pod" >/dev/null 2>&1 || true
echo "apparmor-smoke: ok (berth-default loaded, RuntimeDefault confined and denied mount, Unconfined not, unloaded profiles refused)"
