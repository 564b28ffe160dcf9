#!/bin/sh
# Runs inside the VM (hack/vm/run.sh; `make vm-checkpoint-pod`, and `make vm-checkpoint` after
# checkpoint-smoke.sh): a pod of two counters is checkpointed with the CRI's CheckpointPod
# (hack/podckpt, as crictl has no pod checkpoint), the pod removed, the agent restarted, and
# the pod restored with RestorePod + StartContainer: both counts must go on from the
# checkpointed memory, not start again at 1. Then a checkpoint image (hack/testimage
# checkpoint, imported into the image store) is restored by CreateContainer with its reference.
# criu comes from criu.tar as in checkpoint-smoke.sh.
set -eu

SMOKE=checkpoint-pod-smoke
# shellcheck source=hack/vm/guest-lib.sh
. /share/bin/guest-lib.sh

checkpoint_setup berth-pod.log

# ctr_json NAME IMAGE
ctr_json() {
	cat >"/tmp/$1.json" <<J
{"metadata": {"name": "$1"},
 "image": {"image": "$2"},
 "command": ["/bin/sh", "-c", "i=0; while true; do i=\$((i+1)); echo \$i > /count.new; mv /count.new /count; sleep 0.2; done"],
 "log_path": "$1.log",
 "linux": {"security_context": {"apparmor": {"profile_type": 1}}}}
J
}
# count CTR: the counter's value. The counter renames each value into place, so a read never
# sees a half-written file (echo > /count truncates first: the slow VM once read it empty); an
# exec that answers nothing is tried again, twice.
count() {
	for _ in 1 2 3; do
		v=$(crictl exec "$1" cat /count 2>/dev/null) && [ -n "$v" ] && echo "$v" && return 0
	done
	return 1
}
state() { crictl inspect -o go-template --template '{{.status.state}}' "$1"; }
wait_count() { # wait_count CTR N
	i=0
	until [ "$(count "$1" || echo 0)" -ge "$2" ]; do
		i=$((i + 1))
		[ $i -lt 120 ] || fail "counter $1 did not reach $2"
		sleep 0.5
	done
}
podckpt() { /share/bin/podckpt --sock "$sock" "$@"; }

base=docker.io/berth/busybox:latest
pod_json src
pod=$(crictl runp /tmp/src.json 2>/tmp/err) || fail "runp: $(cat /tmp/err)"
src_one='' src_two=''
for n in one two; do
	ctr_json $n $base
	c=$(crictl create "$pod" /tmp/$n.json /tmp/src.json 2>/tmp/err) || fail "create $n: $(grep -v level=warning /tmp/err)"
	crictl start "$c" >/dev/null 2>/tmp/err || fail "start $n: $(grep -v level=warning /tmp/err)"
	eval "src_$n=$c"
done
wait_count "$src_one" 10
wait_count "$src_two" 10

# A container checkpoint of "one" for the checkpoint image at the end.
crictl checkpoint --export=/var/tmp/one.tar "$src_one" >/dev/null 2>/tmp/err || fail "checkpoint one: $(cat /tmp/err)"

rm -rf /var/tmp/podckpt && mkdir /var/tmp/podckpt
podckpt checkpoint "$pod" /var/tmp/podckpt "$src_one" "$src_two" 2>/tmp/err || fail "CheckpointPod: $(cat /tmp/err)"
at_one=$(count "$src_one") && at_two=$(count "$src_two") || fail "read the counts after the checkpoint"
sleep 1
for c in "$src_one" "$src_two"; do
	[ "$(state "$c")" = CONTAINER_RUNNING ] || fail "container $c is $(state "$c") after CheckpointPod"
done
[ "$(count "$src_one")" -gt "$at_one" ] && [ "$(count "$src_two")" -gt "$at_two" ] ||
	fail "the source pod does not count on after CheckpointPod (left frozen?)"
echo "checkpointed the pod; its counters go on: one $at_one, two $at_two"
(cd /var/tmp/podckpt && find . -maxdepth 2 | sort | sed 's/^/  /')
crictl stopp "$pod" >/dev/null && crictl rmp "$pod" >/dev/null || fail "remove the source pod"

stop_berth
start_berth berth-pod2.log "after the restart"

# Refusals: a name the checkpoint lacks; a non-empty output directory.
pod_json dst
ctr_json three $base
if podckpt restore /var/tmp/podckpt /tmp/dst.json /tmp/one.json /tmp/three.json >/dev/null 2>/tmp/err; then
	fail "RestorePod accepted a name set that is not the checkpoint's"
fi
echo "refused as expected: $(cat /tmp/err)"
[ -z "$(crictl pods -q)" ] || fail "a refused RestorePod left a pod"

podckpt restore /var/tmp/podckpt /tmp/dst.json /tmp/one.json /tmp/two.json >/tmp/restored 2>/tmp/err ||
	fail "RestorePod: $(cat /tmp/err)"
pod=$(head -n 1 /tmp/restored)
one=$(awk '$1 == "one" {print $2}' /tmp/restored)
two=$(awk '$1 == "two" {print $2}' /tmp/restored)
for c in "$one" "$two"; do
	[ "$(state "$c")" = CONTAINER_CREATED ] || fail "restored container $c is $(state "$c"), not created"
	crictl start "$c" >/dev/null 2>/tmp/err || fail "restore (start) $c: $(grep -v level=warning /tmp/err)"
done
f1=$(count "$one") && f2=$(count "$two") || fail "read the restored counts"
sleep 2
l1=$(count "$one") && l2=$(count "$two") || fail "read the restored counts again"
echo "restored pod $pod: one $f1 -> $l1, two $f2 -> $l2 (checkpointed at >= 10)"
[ "$f1" -ge 10 ] && [ "$f2" -ge 10 ] || fail "a restored counter started over ($f1, $f2)"
[ "$l1" -gt "$f1" ] && [ "$l2" -gt "$f2" ] || fail "a restored counter does not count"
crictl stopp "$pod" >/dev/null && crictl rmp "$pod" >/dev/null || fail "remove the restored pod"

# A checkpoint image: the archive of "one" in an OCI image marked with CRI-O's annotation.
/share/bin/testimage checkpoint --archive /var/tmp/one.tar --container one \
	--name localhost/checkpoints/one:latest --out /var/tmp/one-image.tar >/dev/null || fail "build the checkpoint image"
berth --root /var/lib/berth --state /run/berth --listen "$sock" images import /var/tmp/one-image.tar >/dev/null ||
	fail "import the checkpoint image"
pod_json img
pod=$(crictl runp /tmp/img.json 2>/tmp/err) || fail "runp img: $(cat /tmp/err)"
ctr_json one localhost/checkpoints/one:latest
c=$(crictl create "$pod" /tmp/one.json /tmp/img.json 2>/tmp/err) || fail "create from the checkpoint image: $(grep -v level=warning /tmp/err)"
crictl start "$c" >/dev/null 2>/tmp/err || fail "restore from the checkpoint image: $(grep -v level=warning /tmp/err)"
first=$(count "$c") || fail "read the count restored from the image"
sleep 2
later=$(count "$c")
echo "restored from checkpoint image localhost/checkpoints/one:latest: $first, 2 s later $later"
[ "$first" -ge 10 ] || fail "the image-restored counter started over ($first)"
[ "$later" -gt "$first" ] || fail "the image-restored counter does not count"
crictl stopp "$pod" >/dev/null && crictl rmp "$pod" >/dev/null || fail "remove the image-restored pod"
echo "checkpoint-pod-smoke: ok"
