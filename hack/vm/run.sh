#!/usr/bin/env bash
# Boots the cgroup v2 + systemd test VM (hack/vm/build.sh, cached) and runs one command inside
# (VM_KERNEL_ARGS can boot it on cgroup v1 instead):
#
#	hack/vm/run.sh [COMMAND...]      or      VM_TEST='COMMAND' hack/vm/run.sh
#
# The command (arguments joined by spaces) runs under /bin/sh as root in the guest, in /share, with
# /share/bin first in PATH. The 9p share holds:
#	/share/bin      bin/berth, bin/berth-shim, bin/berth-pod-init, the host's crictl if any, and $VM_BINS
#	/share/tests    $VM_TESTS: test binaries compiled on the host (go test -c), as the guest has no Go
#	/share/results  what the guest writes: output.log, exit-code, journal.log, system-state, ...
# With no command, runs hack/vm/smoke.sh (which also gets busybox.tar, a test image, in /share).
# Results land in $VM_OUTPUT/<timestamp>/ with the console log. Each run boots a copy-on-write
# overlay of the cached disk, deleted afterwards. Exit code: the command's (124 when the guest
# stopped it after VM_TIMEOUT), or 1 when the VM fails to boot or to answer (the console's tail is
# shown). Needs root (9p passthrough, the image).
set -euo pipefail
cd "$(dirname "$0")/../.."

VM_TIMEOUT=${VM_TIMEOUT:-900}           # seconds the command may run inside
VM_BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-300} # seconds from qemu start until the command starts
VM_CPUS=${VM_CPUS:-2}
VM_MEM=${VM_MEM:-4G}
VM_ACCEL=${VM_ACCEL:-tcg} # software emulation: the build hosts' CPUs have no VMX/SVM for KVM
VM_OUTPUT=${VM_OUTPUT:-_output/vm}
VM_BINS=${VM_BINS:-}
VM_TESTS=${VM_TESTS:-}
# Extra kernel command line, e.g. systemd.unified_cgroup_hierarchy=0 to boot the same image with
# systemd on cgroup v1 (make vm-systemd-smoke-v1).
VM_KERNEL_ARGS=${VM_KERNEL_ARGS:-}

log() { echo "vm-test: $*" >&2; }

cmd=${VM_TEST:-$*}
for b in bin/berth bin/berth-shim bin/berth-pod-init; do
	[ -x "$b" ] || { log "$b is missing: run make build"; exit 1; }
done

image=$(hack/vm/build.sh)

mkdir -p "$VM_OUTPUT"
out=$(mktemp -d "$(cd "$VM_OUTPUT" && pwd)/$(date -u +%Y%m%dT%H%M%SZ)-XXXX")
chmod 0755 "$out"
share=$out/share
mkdir -p "$share/bin" "$share/tests" "$share/results"
overlay=$out/overlay.qcow2
qemu_pid=

# cleanup leaves only the results: qemu is stopped by its pid, the overlay and the binaries go, and
# what the guest wrote moves up from share/results to the run's directory.
# shellcheck disable=SC2317 # invoked by the trap
cleanup() {
	if [ -n "$qemu_pid" ] && kill -0 "$qemu_pid" 2>/dev/null; then
		kill "$qemu_pid" 2>/dev/null || true
		for _ in 1 2 3 4 5 6 7 8 9 10; do
			kill -0 "$qemu_pid" 2>/dev/null || break
			sleep 0.5
		done
		kill -9 "$qemu_pid" 2>/dev/null || true
		wait "$qemu_pid" 2>/dev/null || true
	fi
	rm -f "$overlay"
	if [ -d "$share/results" ]; then
		cp -a "$share/results/." "$out/"
	fi
	rm -rf "$share"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

cp bin/berth bin/berth-shim bin/berth-pod-init hack/vm/guest-lib.sh "$share/bin/"
if command -v crictl >/dev/null; then cp "$(command -v crictl)" "$share/bin/"; fi
for f in $VM_BINS; do cp "$f" "$share/bin/"; done
for f in $VM_TESTS; do cp "$f" "$share/tests/"; done
if [ -z "$cmd" ]; then
	cp hack/vm/smoke.sh "$share/smoke.sh"
	log "building the busybox test image (hack/testimage layout)"
	go run ./hack/testimage layout --out "$share/busybox.tar" >/dev/null
	cmd="sh /share/smoke.sh"
fi
printf '%s\n' "$cmd" >"$share/cmd"
printf 'VM_GUEST_TIMEOUT=%s\n' "$VM_TIMEOUT" >"$share/env"

qemu-img create -q -f qcow2 -F raw -b "$image/disk.raw" "$overlay"

log "booting $image (results in $out)"
start=$(date +%s.%N)
qemu-system-x86_64 -accel "$VM_ACCEL" -cpu max -smp "$VM_CPUS" -m "$VM_MEM" \
	-nodefaults -display none -no-reboot -serial "file:$out/console.log" \
	-kernel "$image/vmlinuz" -initrd "$image/initrd.img" \
	-append "console=ttyS0 root=/dev/vda rw panic=1${VM_KERNEL_ARGS:+ $VM_KERNEL_ARGS}" \
	-drive "file=$overlay,if=virtio,format=qcow2" \
	-virtfs "local,path=$share,mount_tag=share,security_model=passthrough,id=share" \
	</dev/null >"$out/qemu.log" 2>&1 &
qemu_pid=$!

fail() {
	log "$*; the console's last lines ($out/console.log):"
	tail -n 40 "$out/console.log" >&2 || true
	exit 1
}

# Wait for the guest's exit-code (written last), watching for qemu dying and for the deadlines.
res=$share/results
while [ ! -e "$res/exit-code" ]; do
	kill -0 "$qemu_pid" 2>/dev/null || fail "qemu exited before the command finished ($(cat "$out/qemu.log"))"
	elapsed=$(($(date +%s) - ${start%.*}))
	if [ ! -e "$res/command-start" ] && [ "$elapsed" -gt "$VM_BOOT_TIMEOUT" ]; then
		fail "the command did not start within ${VM_BOOT_TIMEOUT}s"
	fi
	# The guest stops the command itself after VM_TIMEOUT; the margin covers the journal and sync.
	[ "$elapsed" -le $((VM_BOOT_TIMEOUT + VM_TIMEOUT + 60)) ] || fail "no result after ${elapsed}s"
	sleep 1
done
code=$(cat "$res/exit-code")

# The guest powers itself off; give it a moment so that cleanup does not have to kill it.
for _ in $(seq 1 60); do
	kill -0 "$qemu_pid" 2>/dev/null || break
	sleep 1
done

cat "$res/output.log"
guest_start=$(sed -n 's/^date //p' "$res/command-start")
boot=$(awk -v a="$start" -v b="$guest_start" 'BEGIN { printf "%.1f", b - a }')
total=$(awk -v a="$start" -v b="$(date +%s.%N)" 'BEGIN { printf "%.1f", b - a }')
log "system state: $(cat "$res/system-state"); boot to command start ${boot}s (guest uptime $(sed -n 's/^uptime //p' "$res/command-start")s); VM total ${total}s"
if [ -s "$res/failed-units" ]; then log "failed units: $(cat "$res/failed-units")"; fi
log "exit code $code; output, journal and console in $out"
exit "$code"
