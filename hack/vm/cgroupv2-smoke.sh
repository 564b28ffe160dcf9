#!/bin/sh
# Runs inside the VM (hack/vm/run.sh) and asserts berth's cgroup v2 layout: a pod whose container
# has memory and cpu limits starts, the limits land in the container's cgroup, every cgroup berth
# made is a domain cgroup, no berth process sits in a cgroup that has children (the pod init is
# in the pod's pod-init leaf, the shim outside the pod), and stopp/rmp leave nothing under
# /sys/fs/cgroup/berth. Usage, from the repository root after make build:
#
#	go run ./hack/testimage layout --out /tmp/busybox.tar
#	VM_BINS='/tmp/busybox.tar hack/vm/cgroupv2-smoke.sh' hack/vm/run.sh sh /share/bin/cgroupv2-smoke.sh
# The container is AppArmor-unconfined: the guest enables AppArmor without berth's profile loaded.
set -eu

SMOKE=cgroupv2-smoke
# shellcheck source=hack/vm/guest-lib.sh
. /share/bin/guest-lib.sh

[ "$(stat -fc %T /sys/fs/cgroup)" = cgroup2fs ] || fail "/sys/fs/cgroup is not cgroup2fs"
echo "root subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"

start_berth berth.log
berth --root /var/lib/berth --state /run/berth --listen "$sock" images import /share/bin/busybox.tar >/dev/null ||
	fail "import the busybox test image"

cat >/tmp/pod.json <<'J'
{"metadata": {"name": "v2", "namespace": "default", "uid": "v2-uid", "attempt": 0},
 "log_directory": "/var/log/pods/v2",
 "linux": {"security_context": {"namespace_options": {"network": 2}}}}
J
cat >/tmp/ctr.json <<'J'
{"metadata": {"name": "limited"},
 "image": {"image": "docker.io/berth/busybox:latest"},
 "command": ["/bin/sh", "-c", "echo hello; cat /proc/self/cgroup; sleep 300"],
 "log_path": "limited.log",
 "linux": {"resources": {"memory_limit_in_bytes": 67108864, "cpu_period": 100000, "cpu_quota": 50000},
           "security_context": {"apparmor": {"profile_type": 1}}}}
J

pod=$(crictl runp /tmp/pod.json 2>/tmp/err) || fail "runp: $(cat /tmp/err)"
echo "runp: ok $pod"
ctr=$(crictl create "$pod" /tmp/ctr.json /tmp/pod.json 2>/tmp/err) || fail "create: $(grep -v level=warning /tmp/err)"
crictl start "$ctr" >/dev/null 2>/tmp/err || fail "start: $(grep -v level=warning /tmp/err)"
sleep 2
state=$(crictl inspect -o go-template --template '{{.status.state}}' "$ctr")
echo "container state: $state"
[ "$state" = CONTAINER_RUNNING ] || fail "container is $state, not running"

echo "cgroups under /sys/fs/cgroup/berth:"
find /sys/fs/cgroup/berth -mindepth 1 -type d | sort | while read -r d; do
	echo "  ${d#/sys/fs/cgroup/berth/}: type $(cat "$d/cgroup.type"); procs $(tr '\n' ' ' <"$d/cgroup.procs");" \
		"subtree_control $(cat "$d/cgroup.subtree_control"); memory.max $(cat "$d/memory.max" 2>&1); cpu.max $(cat "$d/cpu.max" 2>&1)"
done

podcg=/sys/fs/cgroup/berth/$pod
ctrcg=$podcg/$ctr
for d in "$podcg" "$podcg/pod-init" "$ctrcg"; do
	[ "$(cat "$d/cgroup.type")" = domain ] || fail "$d is $(cat "$d/cgroup.type"), not domain"
done
[ -z "$(cat "$podcg/cgroup.procs")" ] || fail "processes in the pod cgroup itself: $(cat "$podcg/cgroup.procs")"
[ -n "$(cat "$podcg/pod-init/cgroup.procs")" ] || fail "no pod init in $podcg/pod-init"
[ "$(cat "$ctrcg/memory.max")" = 67108864 ] || fail "memory.max is $(cat "$ctrcg/memory.max")"
[ "$(cat "$ctrcg/cpu.max")" = "50000 100000" ] || fail "cpu.max is $(cat "$ctrcg/cpu.max")"
echo "container log:"
sed 's/^/  /' /var/log/pods/v2/limited.log

# The shim (berth-shim --id ...) must be outside the pod's cgroup.
for p in /proc/[0-9]*; do
	if tr '\0' ' ' <"$p/cmdline" 2>/dev/null | grep -q "berth-shim.* --id $pod"; then
		cg=$(cat "$p/cgroup")
		echo "shim ${p#/proc/}: $cg"
		case "$cg" in *"/berth/$pod"*) fail "the shim is in the pod cgroup: $cg" ;; esac
	fi
done

crictl stop --timeout 2 "$ctr" >/dev/null 2>/tmp/err || fail "stop: $(cat /tmp/err)"
crictl stopp "$pod" >/dev/null 2>/tmp/err || fail "stopp: $(cat /tmp/err)"
crictl rmp "$pod" >/dev/null 2>/tmp/err || fail "rmp: $(cat /tmp/err)"
left=$(find /sys/fs/cgroup/berth -mindepth 1 -type d 2>/dev/null)
[ -z "$left" ] || fail "cgroups left under /sys/fs/cgroup/berth: $left"
echo "cgroupv2-smoke: ok"
