#!/usr/bin/env bash
# Kubernetes conformance on berth: e2e.test (k8s.io/kubernetes/test/e2e) and agnhost at
# KUBE_VERSION, built from the wrapper module hack/conformance, run against the single-node
# cluster of hack/cluster.sh.
#
#   hack/conformance.sh build    build (or find cached) e2e.test, agnhost, sample-apiserver, the
#                                ginkgo CLI and upstream busybox; prints their dir
#   hack/conformance.sh run [--runtime berth|containerd] [--nodes N] [--focus REGEX] [--skip REGEX]
#                           [--seed N] [--timeout DURATION] [--report-dir DIR]
#                                run the specs against the cluster (brought up, and down
#                                afterwards, if it does not run yet) and print
#                                "N passed, N failed, N skipped" from the JUnit report;
#                                --focus replaces the default, --skip adds to skips.txt;
#                                --runtime is the node's runtime (hack/cluster.sh up --runtime);
#                                --nodes N runs on N nodes (up --nodes) and then
#                                runs the skips.txt specs marked multi-node too;
#                                --seed fixes Ginkgo's order and --timeout stops the suite, so
#                                that two runtimes' runs reach the same specs;
#                                --parallel N runs the specs in N processes (the ginkgo CLI;
#                                [Serial] ones alone, at the end)
#   hack/conformance.sh compare BERTH_DIR CONTAINERD_DIR [--out FILE]
#                                two runs' reports side by side (hack/conformance/cmd/junitcompare)
#
# Focus defaults to [Conformance] and [NodeConformance]; skip to the patterns in
# hack/conformance/skips.txt (specs a single offline node cannot run, each with its reason).
# Env: KUBE_VERSION (v1.37.2), K8S_BIN_CACHE (/var/cache/berth), CLUSTER_DIR, GO,
#      CONFORMANCE_RUNTIME (berth; what --runtime sets).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/kube-version.sh
source "$REPO/hack/kube-version.sh"
GO=${GO:-go}
K8S_BIN_CACHE=${K8S_BIN_CACHE:-/var/cache/berth}
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/berth-cluster}
MOD=$REPO/hack/conformance
SKIPS=$MOD/skips.txt

log() { echo "conformance.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# --- build ---------------------------------------------------------------------------------

# bin_dir is keyed like hack/cluster.sh's: the version and the wrapper module's graph.
bin_dir() {
	local sum
	sum=$(cat "$MOD/go.mod" "$MOD/go.sum" | sha256sum | cut -c1-12)
	echo "$K8S_BIN_CACHE/e2e-$KUBE_VERSION-$sum"
}


build() {
	local dir start
	dir=$(bin_dir)
	if [[ -f $dir/.complete ]]; then
		build_ginkgo "$dir"
		build_busybox "$dir"
		echo "$dir"
		return 0
	fi
	grep -q "k8s.io/kubernetes $KUBE_VERSION" "$MOD/go.mod" ||
		die "hack/conformance/go.mod does not pin k8s.io/kubernetes $KUBE_VERSION"
	mkdir -p "$dir"
	start=$SECONDS
	log "building agnhost into $dir"
	# agnhost runs inside the test pods: static, as upstream's image ships it.
	(cd "$MOD" && CGO_ENABLED=0 "$GO" build -mod=readonly -buildvcs=false -trimpath \
		-ldflags "-s -w" -o "$dir/agnhost" k8s.io/kubernetes/test/images/agnhost)
	log "built agnhost in $((SECONDS - start))s; building e2e.test"
	start=$SECONDS
	(cd "$MOD" && CGO_ENABLED=0 "$GO" test -c -vet=off -mod=readonly -buildvcs=false -trimpath \
		-ldflags "-s -w $(version_ldflags)" -o "$dir/e2e.test" k8s.io/kubernetes/test/e2e)
	log "built e2e.test in $((SECONDS - start))s"
	# The aggregator spec's sample-apiserver image carries it (hack/critest/images/e2e.go).
	(cd "$MOD" && CGO_ENABLED=0 "$GO" build -mod=readonly -buildvcs=false -trimpath \
		-ldflags "-s -w" -o "$dir/sample-apiserver" k8s.io/sample-apiserver)
	# porter (an agnhost subcommand) serves TLS with the certificate upstream's image carries.
	local src
	src=$(cd "$MOD" && "$GO" list -mod=readonly -f '{{.Dir}}' k8s.io/kubernetes/test/images/agnhost)
	mkdir -p "$dir/agnhost-porter"
	cp "$src/porter/localhost.crt" "$src/porter/localhost.key" "$dir/agnhost-porter/"
	build_ginkgo "$dir"
	build_busybox "$dir"
	touch "$dir/.complete"
	echo "$dir"
}

# build_busybox dir: upstream busybox at BUSYBOX_VERSION, from its release tarball (Debian's
# mirror keeps it as the orig tarball; checked against the release's sha256), with upstream's
# defconfig and none of Debian's patches, as dir/busybox beside agnhost: the e2e busybox image
# runs it (hack/critest/images/e2e.go). Debian's ash drops environment variables whose names
# are not shell names; upstream's passes them on, which the ConfigMap and Secret env specs read.
BUSYBOX_VERSION=1.37.0
BUSYBOX_SHA256=3311dff32e746499f4df0d5df04d7eb396382d7e108bb9250e7b519b837043a4
BUSYBOX_URL=${BUSYBOX_URL:-http://deb.debian.org/debian/pool/main/b/busybox/busybox_$BUSYBOX_VERSION.orig.tar.bz2}
build_busybox() {
	[[ -x $1/busybox ]] && return 0
	local tmp
	tmp=$(mktemp -d)
	log "building busybox $BUSYBOX_VERSION (upstream's, without Debian's patches) into $1"
	curl -fsSL -o "$tmp/bb.tar.bz2" "$BUSYBOX_URL" || { rm -rf "$tmp"; die "fetch $BUSYBOX_URL failed"; }
	echo "$BUSYBOX_SHA256  $tmp/bb.tar.bz2" | sha256sum -c --quiet - || { rm -rf "$tmp"; die "$BUSYBOX_URL: sha256 mismatch"; }
	tar -xjf "$tmp/bb.tar.bz2" -C "$tmp"
	# The build date would go into the banner: left out, so that rebuilds make the same binary.
	# The compiler's warnings go to the log, shown only when the build fails.
	if ! (cd "$tmp/busybox-$BUSYBOX_VERSION" && export KCONFIG_NOTIMESTAMP=1 &&
		make -s defconfig && make -s -j"$(nproc)" busybox) >"$tmp/build.log" 2>&1; then
		tail -20 "$tmp/build.log" >&2
		rm -rf "$tmp"
		die "busybox $BUSYBOX_VERSION build failed"
	fi
	# What it is built for: a name that is no shell name reaches sh -c's children.
	if ! env -i p-data-1=x "$tmp/busybox-$BUSYBOX_VERSION/busybox" sh -c env | grep -qx p-data-1=x; then
		rm -rf "$tmp"
		die "busybox $BUSYBOX_VERSION drops p-data-1 from the environment"
	fi
	mv "$tmp/busybox-$BUSYBOX_VERSION/busybox" "$1/busybox"
	rm -rf "$tmp"
}

# build_ginkgo dir: the ginkgo CLI of the same module graph, which --parallel needs to run
# e2e.test's specs in several processes (e2e.test alone runs them one by one). Built apart
# from .complete so that a cache made before --parallel existed gains it.
build_ginkgo() {
	[[ -x $1/ginkgo ]] && return 0
	log "building the ginkgo CLI into $1"
	(cd "$MOD" && "$GO" build -mod=readonly -buildvcs=false -trimpath -o "$1/ginkgo.tmp" \
		github.com/onsi/ginkgo/v2/ginkgo)
	mv "$1/ginkgo.tmp" "$1/ginkgo"
}

# --- run -----------------------------------------------------------------------------------

FOCUS='\[Conformance\]|\[NodeConformance\]'

# has_cap_sys_resource: whether this process's effective capabilities hold CAP_SYS_RESOURCE (24).
has_cap_sys_resource() {
	local eff
	eff=$(awk '/^CapEff:/ {print $2}' /proc/self/status)
	(((0x$eff >> 24) & 1))
}

# skip_regex joins the patterns of skips.txt: "PATTERN  # reason" lines, '#' comments.
# skip_regex NODES: skips.txt's patterns joined; on more than one node without the lines whose
# reason starts with "multi-node:".
# Lines whose reason starts with "cap-sys-resource:" are left out where this host's root has
# CAP_SYS_RESOURCE (decided once here: the node's runtime and kubelet run with the same).
skip_regex() {
	local lines
	# grep finding nothing is no error here (set -e, pipefail).
	lines=$(grep -v '^#' "$SKIPS" || true)
	(($1 > 1)) && lines=$(grep -v '#[[:space:]]*multi-node:' <<<"$lines" || true)
	has_cap_sys_resource && lines=$(grep -v '#[[:space:]]*cap-sys-resource:' <<<"$lines" || true)
	sed -e 's/[[:space:]]#[[:space:]].*$//' -e 's/[[:space:]]*$//' <<<"$lines" | { grep . || true; } | paste -sd'|'
}

# e2e_run dir report-dir args...: e2e.test against the cluster, upstream's defaults otherwise
# (no timeout is lowered). With PROCS > 1 the ginkgo CLI runs it in PROCS processes, as
# upstream's conformance jobs do: [Serial] specs (Ginkgo's Serial decorator) still run alone,
# after the parallel ones; e2e.test's first process still writes the one JUnit report.
e2e_run() {
	local dir=$1 rdir=$2
	shift 2
	mkdir -p "$rdir"
	if ((${PROCS:-1} > 1)); then
		# The CLI takes its own flags unprefixed and passes what follows -- to e2e.test.
		local gflags=() eflags=() a
		for a in "$@"; do
			case $a in
			--ginkgo.*) gflags+=("--${a#--ginkgo.}") ;;
			*) eflags+=("$a") ;;
			esac
		done
		"$dir/ginkgo" --procs="$PROCS" --no-color "${gflags[@]}" "$dir/e2e.test" -- --kubeconfig="$KCFG" --provider=local \
			--report-dir="$rdir" --e2e-output-dir="$rdir" "${eflags[@]}"
		return
	fi
	"$dir/e2e.test" --kubeconfig="$KCFG" --provider=local --report-dir="$rdir" \
		--e2e-output-dir="$rdir" --ginkgo.no-color "$@"
}

run() {
	local focus=$FOCUS skip="" rdir="" dir started=false rc=0 runtime=${CONFORMANCE_RUNTIME:-berth} extra=() t0
	local nodes=1 more="" PROCS=1
	while (($#)); do
		case $1 in
		--runtime) runtime=$2; shift 2 ;;
		--nodes) nodes=$2; shift 2 ;;
		--seed) extra+=(--ginkgo.seed="$2"); shift 2 ;;
		--timeout) extra+=(--ginkgo.timeout="$2"); shift 2 ;;
		--parallel) PROCS=$2; shift 2 ;;
		--focus) focus=$2; shift 2 ;;
		--skip) more=${more:+$more|}$2; shift 2 ;;
		--report-dir) rdir=$2; shift 2 ;;
		*) die "unknown flag $1" ;;
		esac
	done
	skip=$(skip_regex "$nodes")
	[[ -n $more ]] && skip=${skip:+$skip|}$more
	dir=$(build)
	rdir=${rdir:-$REPO/_output/conformance/$(date -u +%Y%m%dT%H%M%SZ)-$runtime}
	# Absolute: junitsum runs in the module's directory.
	rdir=$(realpath -m "$rdir")
	mkdir -p "$rdir"
	KCFG=$CLUSTER_DIR/kubeconfig
	if ! "$REPO/hack/cluster.sh" status >/dev/null 2>&1; then
		log "no cluster runs: bringing one up on $runtime (and down afterwards)"
		started=true
		trap '"$REPO/hack/cluster.sh" down || true' EXIT
		CLUSTER_AGNHOST=$dir/agnhost "$REPO/hack/cluster.sh" up --runtime "$runtime" --nodes "$nodes" >/dev/null
	fi
	# A cluster from before --runtime recorded none: it runs berth.
	local has
	has=$(cat "$CLUSTER_DIR/runtime" 2>/dev/null || echo berth)
	[[ $has == "$runtime" ]] || die "the running cluster's runtime is $has, not $runtime: hack/cluster.sh down, then rerun"
	has=$(cat "$CLUSTER_DIR/nodes-count" 2>/dev/null || echo 1)
	[[ $has == "$nodes" ]] || die "the running cluster has $has nodes, not $nodes: hack/cluster.sh down, then rerun"
	# What hack/conformance.sh compare (junitcompare) reads besides the reports.
	echo "$runtime" >"$rdir/runtime"
	echo "$skip" >"$rdir/skip"
	grep -q '"registry.k8s.io/e2e-test-images/agnhost:' "$CLUSTER_DIR/images.json" ||
		die "the running cluster's registry lacks e2e.test's images: hack/cluster.sh down, then rerun"
	# The specs the focus selects, from a dry run: skipped is what of them did not run.
	PROCS=1 e2e_run "$dir" "$rdir/selected" --ginkgo.focus="$focus" --ginkgo.dry-run >"$rdir/selected.log" 2>&1 ||
		die "e2e.test --ginkgo.dry-run failed (see $rdir/selected.log)"
	log "running e2e.test on $runtime, report in $rdir"
	t0=$SECONDS
	e2e_run "$dir" "$rdir" --ginkgo.focus="$focus" ${skip:+--ginkgo.skip="$skip"} "${extra[@]}" >"$rdir/e2e.log" 2>&1 || rc=$?
	# The suite's wall time, for the side-by-side report (the cluster's start is not in it).
	echo "$((SECONDS - t0))" >"$rdir/seconds"
	(cd "$MOD" && "$GO" run -mod=readonly ./cmd/junitsum -selected "$rdir/selected/junit_01.xml" \
		-report "$rdir/junit_01.xml" -skip "$skip" -details "$rdir/summary.md")
	log "details in $rdir/summary.md, log in $rdir/e2e.log (e2e.test exit $rc)"
	if $started; then
		trap - EXIT
		"$REPO/hack/cluster.sh" down >&2
	fi
	return "$rc"
}

# compare berth-dir containerd-dir [--out FILE]: two runs of `run` side by side.
compare() {
	local a b out=()
	# Absolute, since junitcompare runs in the module's directory.
	a=$(realpath "${1:?compare needs two report dirs}")
	b=$(realpath "${2:?compare needs two report dirs}")
	shift 2
	[[ ${1:-} == --out ]] && out=(-out "$(realpath -m "${2:?--out needs a file}")")
	(cd "$MOD" && "$GO" run -mod=readonly ./cmd/junitcompare -a "$a" -b "$b" "${out[@]}")
}

cmd=${1:-}
shift || true
case $cmd in
build) build ;;
run) run "$@" ;;
compare) compare "$@" ;;
*) die "usage: $0 build|run [--runtime R] [--nodes N] [--focus REGEX] [--skip REGEX] [--seed N] [--timeout D] [--report-dir DIR]|compare DIR DIR [--out FILE]" ;;
esac
