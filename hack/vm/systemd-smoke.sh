#!/bin/sh
# Runs inside the VM (hack/vm/run.sh; `make vm-smoke` runs it) and checks berth as a systemd
# service with the systemd cgroup driver: hack/install.sh installs it from /share/bin,
# `systemctl start berth` returns once the agent notified READY=1, a pod under a kubelet-style
# slice and a pod under berth's own slice run containers in berth-<id>.scope units whose limits
# systemd set, the pod init sits in berth-podinit-<pod>.scope and each shim in its own scope in
# berth-shims.slice. Then the agent is restarted, stopped and SIGKILLed through systemd
# (Restart=always brings it back): the containers keep running and logging, and containers
# that exit while the agent is down report their exit codes afterwards. Removing the pods stops
# their units; uninstall removes the service. On cgroup v2, or on v1 when the kernel command line
# has systemd.unified_cgroup_hierarchy=0 (make vm-systemd-smoke-v1). Usage, from the repository
# root after make build:
#
#	go run ./hack/testimage layout --out /tmp/busybox.tar
#	VM_BINS='/tmp/busybox.tar hack/vm/systemd-smoke.sh hack/install.sh hack/systemd/berth.service' \
#		hack/vm/run.sh sh /share/bin/systemd-smoke.sh
# The containers are AppArmor-unconfined: the guest enables AppArmor without berth's profile loaded.
set -eu

SMOKE=systemd-smoke
# shellcheck source=hack/vm/guest-lib.sh
. /share/bin/guest-lib.sh

t0=$(date +%s)
step() { echo "--- $* (t+$(($(date +%s) - t0))s)"; }

[ "$(cat /proc/1/comm)" = systemd ] || fail "PID 1 is not systemd"
# The same image boots on cgroup v1 with systemd.unified_cgroup_hierarchy=0 (make
# vm-systemd-smoke-v1): the kernel command line says which layout this run must find.
cg=/sys/fs/cgroup
if grep -q 'systemd.unified_cgroup_hierarchy=0' /proc/cmdline; then
	cgv1=1
	[ "$(stat -fc %T $cg)" = tmpfs ] && [ -d $cg/memory ] || fail "asked for cgroup v1, but $cg is $(stat -fc %T $cg)"
	# On v1 systemd tracks units in its name=systemd hierarchy; limits live per controller.
	units=$cg/systemd mem=$cg/memory cpu=$cg/cpu
else
	cgv1=
	[ "$(stat -fc %T $cg)" = cgroup2fs ] || fail "$cg is not cgroup2fs"
	units=$cg mem=$cg cpu=$cg
fi
echo "cgroup layout: $(stat -fc %T $cg)${cgv1:+ (v1 controllers)}"

# cgroup_of PID: the process's cgroup in the hierarchy systemd tracks units in.
cgroup_of() {
	if [ -n "$cgv1" ]; then
		sed -n 's/^[0-9]*:name=systemd://p' "/proc/$1/cgroup"
	else
		sed -n 's/^0:://p' "/proc/$1/cgroup"
	fi
}

step "install (hack/install.sh, twice: idempotent)"
inst=/tmp/berth-install
mkdir -p "$inst/systemd"
cp /share/bin/install.sh "$inst/"
cp /share/bin/berth.service "$inst/systemd/"
rm -f /etc/crictl.yaml # guest-lib wrote one: install must write its own
sh "$inst/install.sh" --bin-dir /share/bin || fail "install.sh"
for f in /usr/local/bin/berth /usr/local/bin/berth-shim /etc/systemd/system/berth.service /etc/berth/config.toml /etc/crictl.yaml; do
	[ -e "$f" ] || fail "install.sh did not install $f"
done
grep -q '^cgroup_driver = "systemd"' /etc/berth/config.toml || fail "default config: $(cat /etc/berth/config.toml)"
sed -i 's/^log_level = .*/log_level = "debug"/' /etc/berth/config.toml
sh "$inst/install.sh" --bin-dir /share/bin >/dev/null || fail "install.sh, second run"
grep -q '^log_level = "debug"' /etc/berth/config.toml || fail "a second install.sh replaced the configuration"
[ "$(systemctl is-enabled berth)" = enabled ] || fail "berth.service is not enabled"
# crictl's timeout from install.sh (10 s) is short for the emulated VM.
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 120\n' "$sock" "$sock" >/etc/crictl.yaml

step "systemctl start berth"
s=$(date +%s.%N)
systemctl start berth || fail "systemctl start berth: $(journalctl -u berth --no-pager | tail -n 20)"
echo "systemctl start returned after $(awk -v a="$s" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')s (Type=notify: READY=1)"
crictl version >/dev/null 2>&1 || fail "berth is active but does not answer on $sock"
mainpid=$(systemctl show -p MainPID --value berth)
echo "berth MainPID $mainpid in $(cgroup_of "$mainpid")"
[ "$(cgroup_of "$mainpid")" = /system.slice/berth.service ] || fail "the agent is not in berth.service"
berth images import /share/bin/busybox.tar >/dev/null || fail "import the busybox test image"

step "bad input: a cgroupfs path as cgroup parent under the systemd driver"
cat >/tmp/badpod.json <<'J'
{"metadata": {"name": "bad", "namespace": "default", "uid": "bad-uid", "attempt": 0},
 "linux": {"cgroup_parent": "/kubepods/burstable/podbad",
           "security_context": {"namespace_options": {"network": 2}}}}
J
if crictl runp /tmp/badpod.json >/dev/null 2>/tmp/err; then fail "a cgroupfs parent was accepted under the systemd driver"; fi
grep -q cgroup_driver /tmp/err || fail "the refusal does not name cgroup_driver: $(cat /tmp/err)"
echo "refused: $(grep -o 'cgroup parent.*' /tmp/err | head -n 1 | cut -c 1-200)"

step "pods and containers"
mkdir -p /tmp/smokectl
# A kubelet with cgroupDriver=systemd names a burstable pod's slice like this (pod uid, dashes
# as underscores).
cat >/tmp/pod.json <<'J'
{"metadata": {"name": "sd", "namespace": "default", "uid": "sd-uid", "attempt": 0},
 "log_directory": "/var/log/pods/sd",
 "linux": {"cgroup_parent": "kubepods-burstable-podsd_uid.slice",
           "security_context": {"namespace_options": {"network": 2}}}}
J
cat >/tmp/pod2.json <<'J'
{"metadata": {"name": "own", "namespace": "default", "uid": "own-uid", "attempt": 0},
 "log_directory": "/var/log/pods/own",
 "linux": {"security_context": {"namespace_options": {"network": 2}}}}
J
ctrjson() { # name, command, extra json
	cat <<J
{"metadata": {"name": "$1"},
 "image": {"image": "docker.io/berth/busybox:latest"},
 "command": ["/bin/sh", "-c", "$2"],
 "log_path": "$1.log",
 "mounts": [{"container_path": "/ctl", "host_path": "/tmp/smokectl"}]
 $3}
J
}
unconfined='"security_context": {"apparmor": {"profile_type": 1}}'
# shellcheck disable=SC2016 # expanded by the container's shell
ctrjson ticker 'i=0; while true; do echo tick $i; i=$((i+1)); sleep 1; done' \
	", \"linux\": {\"resources\": {\"memory_limit_in_bytes\": 67108864, \"cpu_period\": 100000, \"cpu_quota\": 50000}, $unconfined}" >/tmp/ticker.json
ctrjson exit7 'until [ -e /ctl/go7 ]; do sleep 1; done; exit 7' ", \"linux\": {$unconfined}" >/tmp/exit7.json
ctrjson exit9 'until [ -e /ctl/go9 ]; do sleep 1; done; exit 9' ", \"linux\": {$unconfined}" >/tmp/exit9.json
ctrjson other 'sleep 3600' ", \"linux\": {$unconfined}" >/tmp/other.json

pod=$(crictl runp /tmp/pod.json 2>/tmp/err) || fail "runp: $(cat /tmp/err)"
pod2=$(crictl runp /tmp/pod2.json 2>/tmp/err) || fail "runp (no parent): $(cat /tmp/err)"
run() { # pod, ctr json, pod json
	c=$(crictl create "$1" "$2" "$3" 2>/tmp/err) || fail "create $2: $(grep -v level=warning /tmp/err)"
	crictl start "$c" >/dev/null 2>/tmp/err || fail "start $2: $(grep -v level=warning /tmp/err)"
	echo "$c"
}
ticker=$(run "$pod" /tmp/ticker.json /tmp/pod.json)
exit7=$(run "$pod" /tmp/exit7.json /tmp/pod.json)
exit9=$(run "$pod" /tmp/exit9.json /tmp/pod.json)
other=$(run "$pod2" /tmp/other.json /tmp/pod2.json)
state() { crictl inspect -o go-template --template '{{.status.state}}' "$1"; }
for c in "$ticker" "$exit7" "$exit9" "$other"; do
	[ "$(state "$c")" = CONTAINER_RUNNING ] || fail "container $c is $(state "$c")"
done

step "layout"
podslice=/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podsd_uid.slice
pod2slice=/berth.slice/berth-$pod2.slice
for u in kubepods-burstable-podsd_uid.slice "berth-$pod2.slice" "berth-$ticker.scope" "berth-$other.scope" \
	"berth-podinit-$pod.scope" "berth-podinit-$pod2.scope" "berth-shim-$pod.scope" "berth-shim-$pod2.scope"; do
	[ "$(systemctl is-active "$u")" = active ] || fail "unit $u is $(systemctl is-active "$u")"
done
[ -d "$units$podslice/berth-$ticker.scope" ] || fail "no $podslice/berth-$ticker.scope"
[ -d "$units$pod2slice/berth-$other.scope" ] || fail "no $pod2slice/berth-$other.scope"
[ -n "$(cat "$units$podslice/berth-podinit-$pod.scope/cgroup.procs")" ] || fail "no pod init in berth-podinit-$pod.scope"
[ -z "$(cat "$units$podslice/cgroup.procs")" ] || fail "processes in the pod slice itself"
for p in /proc/[0-9]*; do
	if tr '\0' ' ' 2>/dev/null <"$p/cmdline" | grep -q "berth-shim.* --id $pod "; then
		shimcg=$(cgroup_of "${p#/proc/}")
	fi
done
echo "shim of $pod: $shimcg"
[ "$shimcg" = "/berth.slice/berth-shims.slice/berth-shim-$pod.scope" ] || fail "the shim is in $shimcg"
# Limits: set as unit properties by systemd, seen in the cgroup files.
# systemd's memory limit property is MemoryLimit on v1 and MemoryMax on v2.
memprop=MemoryMax
[ -z "$cgv1" ] || memprop=MemoryLimit
echo "berth-$ticker.scope: $(systemctl show -p $memprop -p CPUQuotaPerSecUSec -p Delegate "berth-$ticker.scope" | tr '\n' ' ')"
[ "$(systemctl show -p $memprop --value "berth-$ticker.scope")" = 67108864 ] || fail "$memprop property is not 64 MiB"
[ "$(systemctl show -p CPUQuotaPerSecUSec --value "berth-$ticker.scope")" = 500ms ] || fail "CPUQuotaPerSecUSec is not 500ms"
if [ -n "$cgv1" ]; then
	memfile=memory.limit_in_bytes cpufile=cpu.cfs_quota_us cpuwant=50000
else
	memfile=memory.max cpufile=cpu.max cpuwant="50000 100000"
fi
got=$(cat "$mem$podslice/berth-$ticker.scope/$memfile") || fail "no $memfile"
[ "$got" = 67108864 ] || fail "$memfile is $got"
got=$(cat "$cpu$podslice/berth-$ticker.scope/$cpufile") || fail "no $cpufile"
[ "$got" = "$cpuwant" ] || fail "$cpufile is $got"
echo "$memfile $(cat "$mem$podslice/berth-$ticker.scope/$memfile"), $cpufile $got"
echo "systemd-cgls:"
systemd-cgls --no-pager -l /kubepods.slice /berth.slice /system.slice/berth.service 2>&1 | sed 's/^/  /'

logged() { grep -c tick "/var/log/pods/sd/ticker.log"; }
tickerpid=$(crictl inspect -o go-template --template '{{.info.pid}}' "$ticker")
# still_running: the ticker is the same process and its log grows.
still_running() {
	n=$(logged)
	sleep 3
	[ "$(crictl inspect -o go-template --template '{{.info.pid}}' "$ticker")" = "$tickerpid" ] || fail "ticker pid changed $1"
	[ "$(state "$ticker")" = CONTAINER_RUNNING ] || fail "ticker is $(state "$ticker") $1"
	[ "$(state "$other")" = CONTAINER_RUNNING ] || fail "other is $(state "$other") $1"
	[ "$(logged)" -gt "$n" ] || fail "the ticker's log stopped growing $1 ($n lines)"
	echo "ticker pid $tickerpid running, log $n -> $(logged) lines $1"
}
wait_agent() { # $1: what happened
	i=0
	until [ "$(systemctl is-active berth)" = active ] && crictl version >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 240 ] || fail "berth did not come back within 120s $1"
		sleep 0.5
	done
	echo "berth back after ~$((i / 2))s $1 (MainPID $(systemctl show -p MainPID --value berth), NRestarts $(systemctl show -p NRestarts --value berth))"
}
# gone PID: waits until the process has exited (while the agent is down).
gone() {
	i=0
	while kill -0 "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 300 ] || fail "pid $1 did not exit within 60s"
		sleep 0.2
	done
}

step "systemctl restart berth"
systemctl restart berth || fail "systemctl restart berth"
wait_agent "after a restart"
still_running "after systemctl restart"

step "systemctl stop berth; a container exits while the agent is down; systemctl start berth"
pid7=$(crictl inspect -o go-template --template '{{.info.pid}}' "$exit7")
systemctl stop berth
[ "$(systemctl is-active berth)" != active ] || fail "berth still active after stop"
touch /tmp/smokectl/go7
gone "$pid7"
echo "exit7 (pid $pid7) exited while berth was stopped"
systemctl start berth || fail "systemctl start berth after stop"
wait_agent "after stop and start"
[ "$(state "$exit7")" = CONTAINER_EXITED ] || fail "exit7 is $(state "$exit7")"
code=$(crictl inspect -o go-template --template '{{.status.exitCode}}' "$exit7")
[ "$code" = 7 ] || fail "exit7 reports exit code $code"
echo "exit7 reports exit code $code"
still_running "after stop and start"

step "systemctl kill -s KILL berth (Restart=always)"
pid9=$(crictl inspect -o go-template --template '{{.info.pid}}' "$exit9")
before=$(systemctl show -p NRestarts --value berth)
systemctl kill -s KILL berth
touch /tmp/smokectl/go9
gone "$pid9"
i=0
until [ "$(systemctl show -p NRestarts --value berth)" -gt "$before" ]; do
	i=$((i + 1))
	[ $i -lt 120 ] || fail "systemd did not restart berth after SIGKILL"
	sleep 0.5
done
wait_agent "after SIGKILL"
[ "$(state "$exit9")" = CONTAINER_EXITED ] || fail "exit9 is $(state "$exit9")"
code=$(crictl inspect -o go-template --template '{{.status.exitCode}}' "$exit9")
[ "$code" = 9 ] || fail "exit9 reports exit code $code"
echo "exit9 reports exit code $code"
still_running "after systemctl kill -s KILL"
for u in "berth-shim-$pod.scope" "berth-shim-$pod2.scope"; do
	[ "$(systemctl is-active "$u")" = active ] || fail "$u is $(systemctl is-active "$u") after the kill"
done

step "clean up: the pods' units go"
for p in "$pod" "$pod2"; do
	crictl stopp "$p" >/dev/null 2>/tmp/err || fail "stopp $p: $(cat /tmp/err)"
	crictl rmp "$p" >/dev/null 2>/tmp/err || fail "rmp $p: $(cat /tmp/err)"
done
left=$(systemctl list-units --all --plain --no-legend 'berth-*.scope' 'berth-*.slice' | awk '{print $1 " " $3}' |
	grep -v '^berth-shims.slice ' || true)
[ -z "$left" ] || fail "units left: $left"
for h in $units $mem $cpu; do
	[ ! -d "$h$pod2slice" ] || fail "$h$pod2slice left"
	[ -z "$(find "$h$podslice" -mindepth 1 -type d 2>/dev/null)" ] || fail "cgroups left in $h$podslice: $(find "$h$podslice" -mindepth 1 -type d)"
done
echo "no berth-* scope or pod slice left (the kubelet-style slice is the kubelet's to remove)"

step "uninstall"
sh "$inst/install.sh" --uninstall || fail "install.sh --uninstall"
if [ -e /usr/local/bin/berth ] || [ -e /etc/systemd/system/berth.service ]; then fail "uninstall left files"; fi
[ "$(systemctl is-active berth)" != active ] || fail "berth still active after uninstall"
echo "systemd-smoke: ok (t+$(($(date +%s) - t0))s)"
