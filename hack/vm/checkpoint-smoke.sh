#!/bin/sh
# Runs inside the VM (hack/vm/run.sh), whose Debian 12 kernel (6.1) CRIU 3.17 supports (the
# build hosts' 6.18 kernels it does not: its vDSO parser predates the vvar_vclock mapping of
# kernels >= 6.13). A counter container is checkpointed with crictl checkpoint --export, its pod
# removed, the agent restarted, and the archive restored into a new pod: the count must go on
# from the checkpointed memory (>= the count at the dump), not start again at 1.
#
# The guest image has no criu; guest-lib.sh's checkpoint_setup installs the host's (Debian 12 as
# well) from criu.tar, made on the host with its libraries, without overwriting the guest's files
# (`make vm-checkpoint` does all of this):
#
#	go run ./hack/testimage layout --out /tmp/busybox.tar
#	tar -chf /tmp/criu.tar -C / usr/sbin/criu $(ldd /usr/sbin/criu | awk '$3 ~ /^\// {print substr($3, 2)}')
#	VM_BINS='/tmp/busybox.tar /tmp/criu.tar hack/vm/checkpoint-smoke.sh' hack/vm/run.sh sh /share/bin/checkpoint-smoke.sh
set -eu

SMOKE=checkpoint-smoke
# shellcheck source=hack/vm/guest-lib.sh
. /share/bin/guest-lib.sh

checkpoint_setup berth.log

# image is a reference or a checkpoint archive's path.
ctr_json() {
	cat >/tmp/ctr.json <<J
{"metadata": {"name": "counter"},
 "image": {"image": "$1"},
 "command": ["/bin/sh", "-c", "i=0; while true; do i=\$((i+1)); echo \$i > /count; sleep 0.2; done"],
 "log_path": "counter.log",
 "linux": {"security_context": {"apparmor": {"profile_type": 1}}}}
J
}
count() { crictl exec "$1" cat /count 2>/dev/null; }

pod_json src
pod=$(crictl runp /tmp/src.json 2>/tmp/err) || fail "runp: $(cat /tmp/err)"
ctr_json docker.io/berth/busybox:latest
ctr=$(crictl create "$pod" /tmp/ctr.json /tmp/src.json 2>/tmp/err) || fail "create: $(grep -v level=warning /tmp/err)"
crictl start "$ctr" >/dev/null 2>/tmp/err || fail "start: $(grep -v level=warning /tmp/err)"
i=0
until [ "$(count "$ctr" || echo 0)" -ge 10 ]; do
	i=$((i + 1))
	[ $i -lt 120 ] || fail "the counter did not reach 10"
	sleep 0.5
done

crictl checkpoint --export=/var/tmp/counter.tar "$ctr" >/dev/null 2>/tmp/err || fail "checkpoint: $(cat /tmp/err)"
after=$(count "$ctr")
echo "checkpointed; the source counter goes on: $after"
state=$(crictl inspect -o go-template --template '{{.status.state}}' "$ctr")
[ "$state" = CONTAINER_RUNNING ] || fail "the source container is $state after the checkpoint"
tar -tf /var/tmp/counter.tar | sed 's/^/  /' | head -n 12
crictl stopp "$pod" >/dev/null && crictl rmp "$pod" >/dev/null || fail "remove the source pod"

stop_berth
start_berth berth2.log "after the restart"

pod_json dst
pod=$(crictl runp /tmp/dst.json 2>/tmp/err) || fail "runp dst: $(cat /tmp/err)"
ctr_json /var/tmp/counter.tar
ctr=$(crictl create "$pod" /tmp/ctr.json /tmp/dst.json 2>/tmp/err) || fail "create from the checkpoint: $(grep -v level=warning /tmp/err)"
crictl start "$ctr" >/dev/null 2>/tmp/err || fail "restore: $(grep -v level=warning /tmp/err)"
first=$(count "$ctr") || fail "read the restored count"
sleep 2
later=$(count "$ctr")
echo "restored counter: $first, 2 s later $later"
[ "$first" -ge 10 ] || fail "the restored counter started over ($first)"
[ "$later" -gt "$first" ] || fail "the restored counter does not count ($first, $later)"
crictl stopp "$pod" >/dev/null && crictl rmp "$pod" >/dev/null || fail "remove the restored pod"
echo "checkpoint-smoke: ok"
