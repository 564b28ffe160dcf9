# Sourced by the scripts that run inside the VM (run.sh puts it in /share/bin): the agent on
# /run/berth/berth.sock, stopped however the script ends, and crictl pointed at it. The script
# sets SMOKE, its name in failures, before sourcing this file.
# shellcheck shell=sh

sock=/run/berth/berth.sock
agent=

fail() {
	echo "${SMOKE:-vm}: FAIL: $*"
	exit 1
}

# start_berth LOG [WHEN]: starts the agent logging to /share/results/LOG and waits until crictl
# gets an answer, 120 s at most (the VM runs code 4-10x slower than the host); WHEN says which
# start a failure is about. $i is left at the number of half-second waits.
start_berth() {
	berth --root /var/lib/berth --state /run/berth --listen "$sock" --shim-binary /share/bin/berth-shim \
		--log-level debug >"/share/results/$1" 2>&1 &
	agent=$!
	i=0
	until crictl version >/dev/null 2>&1; do
		i=$((i + 1))
		kill -0 "$agent" 2>/dev/null || fail "berth exited${2:+ $2}: $(tail -n 20 "/share/results/$1")"
		[ $i -lt 240 ] || fail "berth did not answer on $sock within 120s${2:+ $2}"
		sleep 0.5
	done
}

# stop_berth stops the agent start_berth started; pods are left to the VM's poweroff.
stop_berth() {
	[ -n "$agent" ] || return 0
	kill "$agent" 2>/dev/null
	wait "$agent" 2>/dev/null || true
	agent=
}
trap stop_berth EXIT

# crictl's default 2 s timeout is too short for the VM.
printf 'runtime-endpoint: unix://%s\nimage-endpoint: unix://%s\ntimeout: 120\n' "$sock" "$sock" >/etc/crictl.yaml

# checkpoint_setup LOG: what both checkpoint smokes need first. The guest image has no criu: the
# host's (Debian 12 as well) comes in criu.tar with its libraries and is unpacked without
# overwriting the guest's files. Then the agent starts (logging to LOG), must have found CRIU
# usable, and gets the busybox test image.
checkpoint_setup() {
	if ! command -v criu >/dev/null; then
		tar -xkf /share/bin/criu.tar -C / 2>/dev/null || true
		ldconfig
	fi
	criu check >/dev/null 2>&1 || fail "criu check fails on $(uname -r): $(criu check 2>&1 | tail -n 5)"
	start_berth "$1"
	grep -q 'checkpoint/restore available' "/share/results/$1" || fail "the agent did not find CRIU usable"
	berth --root /var/lib/berth --state /run/berth --listen "$sock" images import /share/bin/busybox.tar >/dev/null ||
		fail "import the busybox test image"
}

# pod_json NAME: a pod config in /tmp/NAME.json (host network, logs in /var/log/pods/NAME).
pod_json() {
	cat >"/tmp/$1.json" <<J
{"metadata": {"name": "$1", "namespace": "default", "uid": "$1-uid", "attempt": 0},
 "log_directory": "/var/log/pods/$1",
 "linux": {"security_context": {"namespace_options": {"network": 2}}}}
J
}
