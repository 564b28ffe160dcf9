#!/bin/sh
# The default command of hack/vm/run.sh, run inside the VM. It asserts that the guest is the node
# berth has to support (systemd as PID 1, a pure cgroup2 hierarchy) and that berth starts and
# serves the CRI there, then probes a host-network pod and a container in it and records what
# happens without asserting it (the cgroup v2 / systemd support in berth is not written yet).
set -eu

SMOKE=smoke
# shellcheck source=hack/vm/guest-lib.sh
. /share/bin/guest-lib.sh

pid1=$(cat /proc/1/comm)
echo "PID 1: $pid1"
[ "$pid1" = systemd ] || fail "PID 1 is $pid1, not systemd"
fstype=$(stat -fc %T /sys/fs/cgroup)
echo "/sys/fs/cgroup: $fstype"
[ "$fstype" = cgroup2fs ] || fail "/sys/fs/cgroup is $fstype, not cgroup2fs"
echo "controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "subtree_control: $(cat /sys/fs/cgroup/cgroup.subtree_control)"
echo "kernel: $(uname -r); $(systemctl --version | head -n 1)"
echo "berth --version: $(berth --version)"

command -v crictl >/dev/null || fail "no crictl in /share/bin: run.sh copies the host's (hack/deps.sh installs it)"
start_berth berth.log
echo "berth answers on $sock after ~$((i / 2))s:"
crictl version
crictl info >/share/results/crictl-info.json 2>&1 || echo "crictl info failed: $(cat /share/results/crictl-info.json)"

# Probes: outcomes are printed, not asserted.
echo "--- probe: import the busybox test image"
berth --root /var/lib/berth --state /run/berth --listen "$sock" images import /share/busybox.tar || true

cat >/tmp/pod.json <<'EOF'
{"metadata": {"name": "smoke", "namespace": "default", "uid": "smoke-uid", "attempt": 0},
 "log_directory": "/var/log/pods/smoke",
 "linux": {"security_context": {"namespace_options": {"network": 2}}}}
EOF

# probe_container NAME RESOURCES: create and start a container in $pod with the given
# linux.resources (JSON), show the cgroups berth made for it and its log, then stop it.
probe_container() {
	echo "--- probe: CreateContainer + StartContainer $1 (resources $2)"
	cat >/tmp/ctr.json <<EOF
{"metadata": {"name": "$1"},
 "image": {"image": "docker.io/berth/busybox:latest"},
 "command": ["/bin/sh", "-c", "echo hello from $1; cat /proc/self/cgroup; sleep 30"],
 "log_path": "$1.log", "linux": {"resources": $2}}
EOF
	if ! ctr=$(crictl create "$pod" /tmp/ctr.json /tmp/pod.json 2>/tmp/crictl.err); then
		echo "create: FAILED: $(grep -v level=warning /tmp/crictl.err | head -n 1)"
		return
	fi
	echo "create: ok"
	if ! crictl start "$ctr" >/dev/null 2>/tmp/crictl.err; then
		echo "start: FAILED: $(grep -v level=warning /tmp/crictl.err | head -n 1)"
		return
	fi
	sleep 2
	echo "start: ok; state $(crictl inspect -o go-template --template '{{.status.state}}' "$ctr" 2>&1)"
	# The node's view: the cgroups berth made, who is in them, the limits they carry.
	echo "cgroups under /sys/fs/cgroup/berth:"
	find /sys/fs/cgroup/berth -mindepth 1 -type d | while read -r d; do
		echo "  ${d#/sys/fs/cgroup/berth/}: type $(cat "$d/cgroup.type"); procs $(tr '\n' ' ' <"$d/cgroup.procs" 2>&1);" \
			"memory.max $(cat "$d/memory.max" 2>&1); cpu.max $(cat "$d/cpu.max" 2>&1)"
	done
	crictl stop --timeout 2 "$ctr" >/dev/null 2>/tmp/crictl.err || echo "stop: FAILED: $(cat /tmp/crictl.err)"
	echo "log:"
	sed 's/^/  /' "/var/log/pods/smoke/$1.log" 2>&1 || true
}

echo "--- probe: RunPodSandbox (host network)"
# crictl's stderr (warnings, errors) goes to /tmp/crictl.err so that stdout is just the id.
if pod=$(crictl runp /tmp/pod.json 2>/tmp/crictl.err); then
	echo "runp: ok; state $(crictl inspectp -o go-template --template '{{.status.state}}' "$pod" 2>&1)"
	probe_container plain '{}'
	probe_container limited '{"memory_limit_in_bytes": 67108864, "cpu_period": 100000, "cpu_quota": 50000}'
	crictl stopp "$pod" >/dev/null 2>/tmp/crictl.err || echo "stopp: FAILED: $(cat /tmp/crictl.err)"
	crictl rmp "$pod" >/dev/null 2>/tmp/crictl.err || echo "rmp: FAILED: $(cat /tmp/crictl.err)"
else
	echo "runp: FAILED: $(cat /tmp/crictl.err)"
fi
echo "smoke: ok (PID 1 systemd, cgroup2fs, berth serves the CRI)"
