#!/usr/bin/env bash
# Measure berth against containerd side by side in one run, on the same CRI workloads.
#
#   hack/bench-compare.sh [--quick] [--pods N] [--containers N] [--rounds N]
#   hack/bench-compare.sh --profile [--seconds N] [--workloads lifecycle,throughput4,cni,pull,memory]
#
# Builds berth (make build, if missing), containerd + runc (hack/containerd.sh, cached) and
# the driver (hack/benchcompare); starts a loopback registry with the test images, a private
# berth and a private containerd (own root, state, socket, bridge and subnet, identical CNI
# conflists, cgroupfs, NRI off), runs hack/benchcompare against both, alternating them per
# round, and stops everything by pid, leaving nothing behind.
# Prints the table; table.txt, results.json and ratios.png are kept in $BENCH_OUT (default
# /var/tmp/berth-bench-compare/<time>) with both runtimes' logs.
# --profile runs berth alone, with its metrics server on BENCH_METRICS_ADDR (default
# 127.0.0.1:19157), and profiles each workload for N seconds (default 20): the mean time of
# each step of each CRI operation, the agent's Go CPU profile, a system-wide perf profile and,
# for memory, the largest mappings of the agent, a shim and a pod init; for cni, the same
# conflist's ADD and DEL through libcni with no runtime (<workload>.txt).
# Env: GO, BERTH_BIN, BERTH_SHIM_BIN, CNI_BIN_DIR (default /opt/cni/bin), BENCH_OUT.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
BERTH_BIN=${BERTH_BIN:-$REPO/bin/berth}
BERTH_SHIM_BIN=${BERTH_SHIM_BIN:-$REPO/bin/berth-shim}
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
OUT=${BENCH_OUT:-/var/tmp/berth-bench-compare/$(date +%Y%m%d-%H%M%S)}

driver_args=()
PROFILE="" profile_args=()
METRICS_ADDR=${BENCH_METRICS_ADDR:-127.0.0.1:19157}
while [[ $# -gt 0 ]]; do
	case $1 in
	--quick) driver_args+=(--quick); shift ;;
	--pods | --containers | --rounds) driver_args+=("$1" "${2:?$1 needs a number}"); shift 2 ;;
	--pods=* | --containers=* | --rounds=*) driver_args+=("$1"); shift ;;
	--profile) PROFILE=yes; shift ;;
	--seconds | --workloads) profile_args+=("$1" "${2:?$1 needs a value}"); shift 2 ;;
	-h | --help) sed -n '2,19p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "bench-compare.sh: unknown argument $1" >&2; exit 2 ;;
	esac
done

log() { echo "bench-compare.sh: $*" >&2; }

TMP="" SUFFIX="" REG_PID="" BERTH_PID="" CTRD_PID="" B_ROOT="" B_STATE="" C_ROOT="" C_STATE=""
B_BRIDGE="" C_BRIDGE="" CGROUP_PARENT="" IPT_BEFORE=""
# Shared directories containerd creates whatever its config says: the shim sockets' dir
# (hard-coded under /run/containerd) and libcni's result cache. Those this run creates are
# removed at the end if empty; deepest first.
# shellcheck source=hack/containerd-config.sh
source "$REPO/hack/containerd-config.sh"
OWN_SHARED=()
for d in "${CONTAINERD_SHARED_DIRS[@]}"; do [[ -e $d ]] || OWN_SHARED+=("$d"); done
B_SUBNET=10.231.0.0/16
C_SUBNET=10.232.0.0/16

# shellcheck source=hack/lib.sh
source "$REPO/hack/lib.sh"

# crictl_rmp sock: a last resort if the driver could not remove its pods.
crictl_rmp() {
	command -v crictl >/dev/null || return 0
	crictl --runtime-endpoint "unix://$1" --timeout 60s rmp -fa >>"$OUT/teardown.log" 2>&1 || log "crictl rmp -fa on $1 failed"
}

cleanup() {
	local rc=$?
	set +e
	if [[ -n $BERTH_PID ]] && kill -0 "$BERTH_PID" 2>/dev/null; then crictl_rmp "$B_STATE/berth.sock"; fi
	if [[ -n $CTRD_PID ]] && kill -0 "$CTRD_PID" 2>/dev/null; then crictl_rmp "$C_STATE/containerd.sock"; fi
	stop_pid "$BERTH_PID" berth
	stop_pid "$CTRD_PID" containerd
	[[ -n $BERTH_PID ]] && wait "$BERTH_PID" 2>/dev/null
	[[ -n $CTRD_PID ]] && wait "$CTRD_PID" 2>/dev/null
	[[ -n $B_STATE ]] && kill_naming "$B_STATE"
	[[ -n $C_STATE ]] && kill_naming "$C_STATE"
	stop_pid "$REG_PID" registry
	[[ -n $REG_PID ]] && wait "$REG_PID" 2>/dev/null
	# Pinned network namespaces are mounts under the state dirs (containerd:
	# netns_mounts_under_state_dir), so remove_dir unmounts them too.
	remove_dir "$B_STATE"
	remove_dir "$C_STATE"
	remove_dir "$B_ROOT"
	remove_dir "$C_ROOT"
	local br
	for br in $B_BRIDGE $C_BRIDGE; do
		if ip link show "$br" >/dev/null 2>&1; then
			ip link del "$br" 2>>"$OUT/teardown.log" || log "cannot delete bridge $br"
		fi
	done
	# The pod cgroups are the "kubelet's" (we passed cgroup_parent): remove them, deepest first.
	if [[ -n $CGROUP_PARENT ]]; then
		local d
		for d in /sys/fs/cgroup/*/"${CGROUP_PARENT#/}" /sys/fs/cgroup/"${CGROUP_PARENT#/}"; do
			[[ -d $d ]] || continue
			find "$d" -depth -type d -exec rmdir {} + 2>>"$OUT/teardown.log" || log "cannot remove cgroup $d (not empty?)"
		done
	fi
	# iptables rules naming our subnets (bridge ipMasq, portmap) must be gone with the pods.
	if command -v iptables-save >/dev/null && [[ -n $IPT_BEFORE ]]; then
		local left
		left=$(iptables-save 2>/dev/null | grep -F -e "${B_SUBNET%.0.0/16}." -e "${C_SUBNET%.0.0/16}." -e bench-berth -e bench-containerd || true)
		[[ -z $left ]] || { log "iptables rules left behind:"; echo "$left" >&2; }
	fi
	local s
	for s in "${OWN_SHARED[@]}"; do
		[[ -d $s ]] || continue
		rmdir "$s" 2>>"$OUT/teardown.log" || log "cannot remove $s (in use by someone else?)"
	done
	[[ -n $TMP ]] && rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- build ---------------------------------------------------------------------------------

mkdir -p "$OUT"
[[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local && -x $CNI_BIN_DIR/portmap ]] ||
	{ log "CNI plugins missing in $CNI_BIN_DIR (hack/deps.sh installs them)"; exit 1; }
if [[ ! -x $BERTH_BIN || ! -x $BERTH_SHIM_BIN ]]; then
	log "building berth (make build)"
	make -C "$REPO" build
fi
CTRD_BIN=""
[[ -n $PROFILE ]] || CTRD_BIN=$("$REPO/hack/containerd.sh")
TMP=$(mktemp -d /tmp/berth-bench-compare.XXXXXX)
log "building the driver"
(cd "$REPO" && "$GO" build -o "$TMP/benchcompare" ./hack/benchcompare)

# --- registry ------------------------------------------------------------------------------

CERTS=$TMP/certs.d
log "building the images and starting the registry (log in $OUT/registry.log)"
"$TMP/benchcompare" registry --certs-dir "$CERTS" >"$OUT/registry.log" 2>&1 &
REG_PID=$!
for ((i = 0; i < 3000; i++)); do
	grep -q '^serving on ' "$OUT/registry.log" 2>/dev/null && break
	kill -0 "$REG_PID" 2>/dev/null || { cat "$OUT/registry.log" >&2; log "registry died"; exit 1; }
	sleep 0.1
done
grep -q '^serving on ' "$OUT/registry.log" || { log "registry did not come up (see $OUT/registry.log)"; exit 1; }

# --- private runtimes ----------------------------------------------------------------------

# Short names: <state>/.../<64-hex id>/*.sock must fit a 108-byte socket path.
B_ROOT=$(mktemp -d /var/lib/berthbb.XXXXXX)
B_STATE=$(mktemp -d /run/berthbb.XXXXXX)
SUFFIX=${B_STATE##*.}
C_ROOT=/var/lib/berthbc.$SUFFIX C_STATE=/run/berthbc.$SUFFIX
mkdir -p "$C_ROOT" "$C_STATE"
B_BRIDGE=bbb$SUFFIX C_BRIDGE=bbc$SUFFIX
CGROUP_PARENT=/berthbench.$SUFFIX
IPT_BEFORE=yes

# conflist name bridge subnet ipam-dir: identical for both runtimes but for these four.
conflist() {
	cat <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$1",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$2",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$3"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$4"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
EOF
}
mkdir -p "$B_ROOT/net.d" "$C_ROOT/net.d"
conflist bench-berth "$B_BRIDGE" "$B_SUBNET" "$B_ROOT/ipam" >"$B_ROOT/net.d/10-bench.conflist"
conflist bench-containerd "$C_BRIDGE" "$C_SUBNET" "$C_ROOT/ipam" >"$C_ROOT/net.d/10-bench.conflist"

cat >"$B_ROOT/config.toml" <<EOF
root = "$B_ROOT"
state = "$B_STATE"
listen = "$B_STATE/berth.sock"
shim_binary = "$BERTH_SHIM_BIN"
cgroup_driver = "cgroupfs"

[images]
certs_dir = "$CERTS"

[nri]
enable = false

[metrics]
address = "${PROFILE:+$METRICS_ADDR}"

[network]
cni_conf_dir = "$B_ROOT/net.d"
cni_bin_dirs = ["$CNI_BIN_DIR"]
default_bridge = "$B_BRIDGE"
default_subnet = "$B_SUBNET"
EOF

# The reference containerd config (hack/containerd-config.sh), with bench-compare's sandbox image.
containerd_config "$C_ROOT" "$C_STATE" "$CTRD_BIN" "$CERTS" "$CNI_BIN_DIR" "$C_ROOT/net.d" \
	bench.invalid/berth/pause:latest >"$C_ROOT/config.toml"
cp "$B_ROOT/config.toml" "$OUT/berth-config.toml"
cp "$C_ROOT/config.toml" "$OUT/containerd-config.toml"

# wait_sock pid sock name: until the socket answers a CRI Version (the driver retries no more).
wait_sock() {
	local pid=$1 sock=$2 name=$3 i
	for ((i = 0; i < 600; i++)); do
		kill -0 "$pid" 2>/dev/null || { tail -20 "$OUT/$name.log" >&2; log "$name exited"; return 1; }
		if [[ -S $sock ]] && crictl --runtime-endpoint "unix://$sock" --timeout 2s version >/dev/null 2>&1; then
			return 0
		fi
		sleep 0.1
	done
	log "$name did not answer on $sock (see $OUT/$name.log)"
	return 1
}

log "starting berth ($BERTH_BIN), log in $OUT/berth.log"
"$BERTH_BIN" --config "$B_ROOT/config.toml" >"$OUT/berth.log" 2>&1 &
BERTH_PID=$!
if [[ -n $PROFILE ]]; then
	wait_sock "$BERTH_PID" "$B_STATE/berth.sock" berth
	log "profiling berth alone (${profile_args[*]:-default workloads})"
	CNI_BIN_DIR=$CNI_BIN_DIR "$TMP/benchcompare" profile --out "$OUT" --cgroup-parent "$CGROUP_PARENT" --metrics "$METRICS_ADDR" \
		--berth "$B_STATE/berth.sock" --berth-pid "$BERTH_PID" --berth-state "$B_STATE" --berth-root "$B_ROOT" \
		--berth-bin "$BERTH_BIN" "${profile_args[@]}" 2>&1 | tee "$OUT/run.log"
	log "summaries (<workload>.txt), profiles and logs in $OUT"
	exit 0
fi
# The shim binary must be on containerd's PATH; runc is named in its options.
log "starting containerd ($CTRD_BIN), log in $OUT/containerd.log"
PATH=$CTRD_BIN:$PATH "$CTRD_BIN/containerd" --config "$C_ROOT/config.toml" >"$OUT/containerd.log" 2>&1 &
CTRD_PID=$!
wait_sock "$BERTH_PID" "$B_STATE/berth.sock" berth
wait_sock "$CTRD_PID" "$C_STATE/containerd.sock" containerd

# --- run -----------------------------------------------------------------------------------

log "running the workloads (${driver_args[*]:-default sizes})"
"$TMP/benchcompare" run --out "$OUT" --cgroup-parent "$CGROUP_PARENT" \
	--berth "$B_STATE/berth.sock" --berth-pid "$BERTH_PID" --berth-state "$B_STATE" --berth-root "$B_ROOT" \
	--containerd "$C_STATE/containerd.sock" --containerd-pid "$CTRD_PID" --containerd-state "$C_STATE" --containerd-root "$C_ROOT" \
	"${driver_args[@]}" 2>&1 | tee "$OUT/run.log"
log "logs, table.txt, results.json and ratios.png in $OUT"
