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
