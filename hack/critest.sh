#!/usr/bin/env bash
# Run critest (cri-tools v1.37.0, the CRI conformance suite) against berth with no internet:
# every image critest pulls is served by hack/critest/images on 127.0.0.1 and berth reaches it
# through hosts.toml mirrors. Installs critest and ginkgo if missing, starts the registry and a
# throw-away berth (own root, state and socket), runs the suite, then tears everything down:
# pods removed through CRI, berth stopped with SIGTERM, then a leak check scoped to this berth
# (hack/check-leaks.sh) that fails the run on anything left, and only then a forced cleanup.
#
#   hack/critest.sh [--focus REGEX] [--parallel N] [--benchmark] [-- EXTRA CRITEST ARGS]
#
# Prints "N passed, N failed, N skipped" last and exits non-zero if any spec failed or the
# stopped berth left anything behind.
# Logs and reports are kept in $CRITEST_OUT (default /var/tmp/berth-critest/<time>).
# Env: GO (go tool), BERTH_BIN, BERTH_SHIM_BIN, CRITEST (install path), CRICTL;
# CRITEST_IMAGES_BIN (a prebuilt hack/critest/images), CRITEST_NNP (its prebuilt nonewprivs
# helper, --write-nnp) and CRITEST_NO_INSTALL=1 run with no Go toolchain (the VM: hack/vm/suites.sh).
set -euo pipefail

CRI_TOOLS_VERSION=v1.37.0
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
GO=${GO:-go}
CRITEST=${CRITEST:-/usr/local/bin/critest}
CRICTL=${CRICTL:-crictl}
BERTH_BIN=${BERTH_BIN:-$REPO/bin/berth}
BERTH_SHIM_BIN=${BERTH_SHIM_BIN:-$REPO/bin/berth-shim}
SKIPS=$REPO/hack/critest/skips.txt
OUT=${CRITEST_OUT:-/var/tmp/berth-critest/$(date +%Y%m%d-%H%M%S)}

focus="" parallel=1 benchmark=false extra=()

usage() {
	sed -n '2,11p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
	exit "${1:-2}"
}

while [[ $# -gt 0 ]]; do
	case $1 in
	--focus) focus=${2:?--focus needs a regex}; shift 2 ;;
	--focus=*) focus=${1#*=}; shift ;;
	--parallel) parallel=${2:?--parallel needs a number}; shift 2 ;;
	--parallel=*) parallel=${1#*=}; shift ;;
	--benchmark) benchmark=true; shift ;;
	-h | --help) usage 0 ;;
	--) shift; extra=("$@"); break ;;
	*) echo "critest.sh: unknown argument $1" >&2; usage ;;
	esac
done
[[ $parallel =~ ^[1-9][0-9]*$ ]] || { echo "critest.sh: --parallel wants a positive number" >&2; exit 2; }

log() { echo "critest.sh: $*" >&2; }

# --- install -------------------------------------------------------------------------------

# install_critest builds critest from the module source (go test -c ./cmd/critest), as
# cri-tools' Makefile does, unless the installed one already reports the right version.
install_critest() {
	# Capture first: grep -q closing the pipe early would fail the pipeline under pipefail.
	local have
	have=$([[ -x $CRITEST ]] && "$CRITEST" -version 2>/dev/null || true)
	if grep -q "^critest version: $CRI_TOOLS_VERSION\$" <<<"$have"; then
		return
	fi
	log "building critest $CRI_TOOLS_VERSION into $CRITEST"
	local dir src
	dir=$("$GO" mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	[[ -d $dir ]] || { log "cannot find the cri-tools $CRI_TOOLS_VERSION module source"; return 1; }
	# The module cache is read-only and outside any workspace: build from a writable copy.
	src=$(mktemp -d /tmp/berth-cri-tools.XXXXXX)
	cp -r "$dir/." "$src"
	chmod -R u+w "$src"
	if ! (cd "$src" && GOWORK=off GOFLAGS=-mod=mod "$GO" test -c -o "$CRITEST.tmp" \
		-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRI_TOOLS_VERSION" ./cmd/critest); then
		rm -rf "$src"
		return 1
	fi
	mv "$CRITEST.tmp" "$CRITEST"
	rm -rf "$src"
}

# install_ginkgo installs the ginkgo CLI critest runs for --parallel, at cri-tools' version.
install_ginkgo() {
	local dir want
	dir=$("$GO" mod download -json "sigs.k8s.io/cri-tools@$CRI_TOOLS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
	want=$(awk '$1 == "github.com/onsi/ginkgo/v2" { print $2 }' "$dir/go.mod")
	[[ -n $want ]] || { log "cannot find the ginkgo version in cri-tools' go.mod"; return 1; }
	if command -v ginkgo >/dev/null && [[ $(ginkgo version 2>/dev/null) == *"Version ${want#v}" ]]; then
		return
	fi
	log "installing ginkgo $want into /usr/local/bin"
	(cd /tmp && GOWORK=off GOBIN=/usr/local/bin "$GO" install "github.com/onsi/ginkgo/v2/ginkgo@$want")
}

# --- teardown ------------------------------------------------------------------------------

TMP="" ROOT_DIR="" STATE_DIR="" REG_PID="" BERTH_PID="" SOCK="" BRIDGE="" OWN_PARENT=false SAMPLER_PID=""
SUBNET=10.89.0.0/16

# shellcheck source=hack/lib.sh
source "$REPO/hack/lib.sh"

# sample_ids records the ids of berth's pods and containers while they exist (their state
# directories are named by id), so that the leak check can find their cgroups and rules
# after they are gone. The default pod cgroup parent is shared with any other berth on the
# node: the ids tell ours apart.
sample_ids() {
	set +e # an empty listing is no error
	while :; do
		ls -1 "$STATE_DIR/sandboxes" "$STATE_DIR/containers" 2>/dev/null | grep -E '^[0-9a-f]{64}$' >>"$OUT/ids.raw"
		sleep 0.2
	done
}

# stop_berth stops berth the way a node does: pods removed through CRI, then SIGTERM.
stop_berth() {
	if kill -0 "$BERTH_PID" 2>/dev/null; then
		"$CRICTL" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 60s rmp -fa >>"$OUT/teardown.log" 2>&1 ||
			log "crictl rmp -fa failed (see $OUT/teardown.log)"
	fi
	stop_pid "$BERTH_PID" berth
	wait "$BERTH_PID" 2>/dev/null
	# Shims are daemonized: the node's init reaps them, sometimes seconds after they exit.
	# Wait for that (10 s at most) so that the leak check sees no berth zombie.
	local i
	for ((i = 0; i < 100; i++)); do
		ps -eo stat=,comm= | grep -qE '^Z.* berth' || break
		sleep 0.1
	done
}

# check_leaks fails if the stopped berth left anything: mounts, shims, pod cgroups, ports
# on its bridge, addresses and iptables rules in its subnet.
check_leaks() {
	sort -u "$OUT/ids.raw" >"$OUT/ids" 2>/dev/null
	log "checking what berth left behind ($(wc -l <"$OUT/ids") pod and container ids seen)"
	if "$REPO/hack/check-leaks.sh" --state "$STATE_DIR" --root "$ROOT_DIR" --bridge "$BRIDGE" \
		--subnet "$SUBNET" --ids "$OUT/ids" 2> >(tee "$OUT/leaks.log" >&2); then
		return 0
	fi
	log "berth left the above behind after a normal stop (also in $OUT/leaks.log); cleaning up by force"
	return 1
}

# force_clean removes whatever a failed or leaking run left, so the node is clean for the
# next step either way.
force_clean() {
	[[ -n $STATE_DIR ]] || return 0 # nothing started yet
	# Shims outlive the agent by design; ours are the ones naming our state dir.
	kill_naming "$STATE_DIR"
	# Whatever berth left mounted (shm, rootfs, pinned netns) must go before the directory.
	remove_dir "$STATE_DIR"
	remove_dir "$ROOT_DIR"
	if [[ -s $OUT/ids ]]; then
		clean_cgroups
		clean_iptables
	fi
	# The node-level objects the agent leaves by design: its pod bridge, and the default pod
	# cgroup parent (critest sends no cgroup_parent) when this run created it.
	if [[ -n $BRIDGE ]] && ip link show "$BRIDGE" >/dev/null 2>&1; then
		ip link del "$BRIDGE" 2>>"$OUT/teardown.log" || log "cannot delete bridge $BRIDGE"
	fi
	if $OWN_PARENT; then
		local d
		for d in /sys/fs/cgroup/*/berth /sys/fs/cgroup/berth; do
			[[ -d $d ]] && { rmdir "$d" 2>>"$OUT/teardown.log" || log "cannot remove cgroup $d (not empty?)"; }
		done
	fi
}

# clean_cgroups kills what is left in our pods' cgroups, then removes them, deepest first.
clean_cgroups() {
	local cgs c i
	cgs=$(find /sys/fs/cgroup -mindepth 2 -maxdepth 6 -type d 2>/dev/null | grep -F -f "$OUT/ids" | sort -r)
	[[ -n $cgs ]] || return 0
	for c in $cgs; do
		xargs -r kill -KILL <"$c/cgroup.procs" 2>/dev/null
	done
	local busy
	for ((i = 0; i < 50; i++)); do # a killed task leaves its cgroup once it has exited
		busy=false
		for c in $cgs; do
			[[ -n $(cat "$c/cgroup.procs" 2>/dev/null) ]] && busy=true
		done
		$busy || break
		sleep 0.1
	done
	for c in $cgs; do
		rmdir "$c" 2>>"$OUT/teardown.log" || log "cannot remove cgroup $c"
	done
}

# clean_iptables deletes the rules naming our pods (CNI tags them with the pod id) and the
# per-pod chains they jump to.
clean_iptables() {
	local table rule chain chains
	for table in nat filter; do
		chains=""
		while read -r rule; do
			chain=$(sed -nE 's/.* -j (CNI-(DN-)?[0-9a-f]+)( .*)?$/\1/p' <<<"$rule")
			[[ -n $chain ]] && chains+=" $chain"
			# iptables-save quotes the comment the way a shell does.
			eval "iptables -t $table -D ${rule#-A }" 2>>"$OUT/teardown.log" || log "cannot delete iptables rule: $rule"
		done < <(iptables-save -t "$table" 2>/dev/null | grep -E '^-A ' | grep -F -f "$OUT/ids" | grep -vE '^-A CNI-(DN-)?[0-9a-f]+ ')
		for chain in $(tr ' ' '\n' <<<"$chains" | sort -u); do
			iptables -t "$table" -F "$chain" 2>>"$OUT/teardown.log" && iptables -t "$table" -X "$chain" 2>>"$OUT/teardown.log" ||
				log "cannot delete iptables chain $chain"
		done
	done
}

cleanup() {
	local rc=$?
	set +e
	if [[ -n $SAMPLER_PID ]]; then
		kill "$SAMPLER_PID" 2>/dev/null
		wait "$SAMPLER_PID" 2>/dev/null
	fi
	if [[ -n $REG_PID ]]; then
		stop_pid "$REG_PID" registry
		wait "$REG_PID" 2>/dev/null
	fi
	if [[ -n $BERTH_PID ]]; then
		stop_berth
		check_leaks || rc=1
	fi
	force_clean
	[[ -n $TMP ]] && rm -rf "$TMP"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- setup ---------------------------------------------------------------------------------

mkdir -p "$OUT"
if [[ -z ${CRITEST_NO_INSTALL:-} ]]; then
	install_critest
	install_ginkgo
fi
command -v "$CRICTL" >/dev/null || { log "crictl not found (needed to remove pods at the end)"; exit 1; }
if [[ ! -x $BERTH_BIN || ! -x $BERTH_SHIM_BIN ]]; then
	log "building berth (make build)"
	make -C "$REPO" build
fi

TMP=$(mktemp -d /tmp/berth-critest.XXXXXX)
# Short names: <state>/shims/<64-hex sandbox id>/shim.sock must fit a 108-byte socket path.
ROOT_DIR=$(mktemp -d /var/lib/berthct.XXXXXX)
STATE_DIR=$(mktemp -d /run/berthct.XXXXXX)
# A private pod network (bridge, subnet, empty CNI config dir), deleted at teardown, so that
# berth0 of another agent on the node is neither used nor removed.
BRIDGE=bct${STATE_DIR##*.}
mkdir -p "$TMP/net.d"
compgen -G '/sys/fs/cgroup/*/berth' >/dev/null || [[ -d /sys/fs/cgroup/berth ]] || OWN_PARENT=true
SOCK=$STATE_DIR/berth.sock
CERTS=$TMP/certs.d

log "building and starting the image registry"
if [[ -n ${CRITEST_IMAGES_BIN:-} ]]; then
	cp "$CRITEST_IMAGES_BIN" "$TMP/critest-images"
else
	(cd "$REPO" && "$GO" build -o "$TMP/critest-images" ./hack/critest/images)
fi
nnp_args=()
[[ -n ${CRITEST_NNP:-} ]] && nnp_args=(--nnp "$CRITEST_NNP")
"$TMP/critest-images" --addr 127.0.0.1:0 --pidfile "$TMP/images.pid" --certs-dir "$CERTS" \
	--manifest "$OUT/images.json" "${nnp_args[@]}" >"$OUT/images.log" 2>&1 &
REG_PID=$!
for ((i = 0; i < 1200; i++)); do
	grep -q '^serving on ' "$OUT/images.log" 2>/dev/null && break
	kill -0 "$REG_PID" 2>/dev/null || { cat "$OUT/images.log" >&2; log "image registry died"; exit 1; }
	sleep 0.1
done
REG_ADDR=$(sed -n 's/^serving on //p' "$OUT/images.log")
[[ -n $REG_ADDR ]] || { log "image registry did not come up (see $OUT/images.log)"; exit 1; }
log "registry on $REG_ADDR, mirrors in $CERTS"

cat >"$TMP/config.toml" <<EOF
root = "$ROOT_DIR"
state = "$STATE_DIR"
listen = "$SOCK"
shim_binary = "$BERTH_SHIM_BIN"
log_level = "debug"

[images]
certs_dir = "$CERTS"

# A private NRI socket: another agent on the node must not take /var/run/nri/nri.sock from us.
[nri]
socket_path = "$STATE_DIR/nri.sock"

[network]
cni_conf_dir = "$TMP/net.d"
default_bridge = "$BRIDGE"
default_subnet = "$SUBNET"
EOF
cp "$TMP/config.toml" "$OUT/berth-config.toml"

log "starting berth ($BERTH_BIN), log in $OUT/berth.log"
"$BERTH_BIN" --config "$TMP/config.toml" --shim-binary "$BERTH_SHIM_BIN" >"$OUT/berth.log" 2>&1 &
BERTH_PID=$!
for ((i = 0; i < 300; i++)); do
	kill -0 "$BERTH_PID" 2>/dev/null || { tail -20 "$OUT/berth.log" >&2; log "berth exited"; exit 1; }
	if [[ -S $SOCK ]] && "$CRICTL" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 2s version >/dev/null 2>&1; then
		break
	fi
	sleep 0.1
done
[[ -S $SOCK ]] || { log "berth did not create $SOCK"; exit 1; }
sample_ids &
SAMPLER_PID=$!

# --- run -----------------------------------------------------------------------------------

# skip_regex joins the first column of skips.txt, regex-quoted, into one alternation.
skip_regex() {
	grep -v '^[[:space:]]*\(#\|$\)' "$SKIPS" | cut -f1 | sed 's/[][\.*^$(){}?+|/]/\\&/g' | paste -sd'|'
}

args=(--runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK"
	-ginkgo.no-color -ginkgo.json-report "$OUT/report.json")
# Passing -parallel=1 makes ginkgo mistake it for go test's -parallel and refuse to run.
((parallel > 1)) && args+=(-parallel "$parallel")
[[ -n $focus ]] && args+=(-ginkgo.focus "$focus")
if $benchmark; then
	mkdir -p "$OUT/benchmark"
	cat >"$OUT/benchmark-params.yaml" <<EOF
containersNumber: 10
containersNumberParallel: 2
podsNumber: 10
podsNumberParallel: 2
imagesNumber: 5
imagesNumberParallel: 1
EOF
	args+=(-benchmark -benchmarking-params-file "$OUT/benchmark-params.yaml" -benchmarking-output-dir "$OUT/benchmark")
else
	skips=$(skip_regex)
	[[ -n $skips ]] && args+=(-ginkgo.skip "$skips")
fi
args+=(-nri-socket "$STATE_DIR/nri.sock") # critest's NRI specs run only with it
args+=("${extra[@]}")

log "running $CRITEST ${args[*]}"
set +e
# critest runs from its own temp dir: it writes files (e.g. junit) relative to the cwd.
(cd "$TMP" && "$CRITEST" "${args[@]}") 2>&1 | tee "$OUT/critest.log"
critest_rc=${PIPESTATUS[0]}
set -e

# --- summary -------------------------------------------------------------------------------

# count_report prints "passed failed skipped" from ginkgo's JSON report (It specs only;
# pending counts as skipped, panics and timeouts as failures).
count_report() {
	jq -r '[.[].SpecReports[] | select(.LeafNodeType == "It") | .State]
		| [(map(select(. == "passed")) | length),
		   (map(select(. == "failed" or . == "panicked" or . == "timedout" or . == "interrupted" or . == "aborted")) | length),
		   (map(select(. == "skipped" or . == "pending")) | length)] | @tsv' "$OUT/report.json"
}

# count_log parses ginkgo's summary line, e.g. "FAIL! -- 80 Passed | 15 Failed | 0 Pending |
# 25 Skipped" (not printed in --benchmark's succinct mode).
count_log() {
	local line
	line=$(grep -E '[0-9]+ Passed \| [0-9]+ Failed \| [0-9]+ Pending \| [0-9]+ Skipped' "$OUT/critest.log" | tail -1)
	[[ -n $line ]] || return 1
	sed -E 's/.* ([0-9]+) Passed \| ([0-9]+) Failed \| ([0-9]+) Pending \| ([0-9]+) Skipped.*/\1 \2 \3 \4/' <<<"$line" |
		awk '{ print $1 "\t" $2 "\t" $3 + $4 }'
}

counts=""
if command -v jq >/dev/null && [[ -s $OUT/report.json ]]; then
	counts=$(count_report || true)
fi
[[ -n $counts ]] || counts=$(count_log || true)
if [[ -z $counts ]]; then
	log "no ginkgo report or summary from critest (exit status $critest_rc); logs in $OUT"
	echo "0 passed, 0 failed, 0 skipped"
	exit 1
fi
read -r passed failed skipped <<<"$counts"
if ((failed > 0)); then
	log "failed specs:"
	if command -v jq >/dev/null && [[ -s $OUT/report.json ]]; then
		jq -r '.[].SpecReports[] | select(.LeafNodeType == "It" and (.State | IN("passed", "skipped", "pending") | not))
			| "  [" + .State + "] " + ((.ContainerHierarchyTexts + [.LeafNodeText]) | join(" "))' "$OUT/report.json" >&2
	else
		grep -E '^ *\[(FAIL|PANICKED|TIMEDOUT|INTERRUPTED)\]' "$OUT/critest.log" >&2 || true
	fi
fi
log "logs and reports in $OUT"
echo "$passed passed, $failed failed, $skipped skipped"
if ((failed > 0 || critest_rc != 0)); then
	exit 1
fi
