#!/bin/sh
# The guest side of hack/vm/suites.sh: installs what the suites need (CNI plugins, the kubelet,
# critest), runs each suite with its own time budget and prints its counts. Arguments: the mode
# (full, subset, or only: the tests /share/bin/run-regex matches), then the suites. Each suite's output goes to /share/results/<suite>.log as it
# runs (readable from the host during the run); counts go to /share/results/counts.
set -u

SMOKE=suites
# shellcheck source=hack/vm/guest-lib.sh
. /share/bin/guest-lib.sh

mode=$1
shift
res=/share/results

mkdir -p /opt/cni/bin /usr/local/bin
tar -C /opt/cni/bin -xf /share/bin/cni.tar || fail "unpack the CNI plugins"
for b in kubelet critest; do
	[ -e "/share/bin/$b" ] && cp "/share/bin/$b" /usr/local/bin/
done
# critest loads its AppArmor test profiles with `sudo apparmor_parser`; the guest runs as root
# and has no sudo.
if ! command -v sudo >/dev/null; then
	printf '#!/bin/sh\nexec "$@"\n' >/usr/local/bin/sudo
	chmod 0755 /usr/local/bin/sudo
fi
export BERTH_BIN=/share/bin/berth BERTH_SHIM_BIN=/share/bin/berth-shim BERTH_E2E_LOGDIR=$res/logs
mkdir -p "$BERTH_E2E_LOGDIR"
echo "kernel $(uname -r); $(systemctl --version | head -n 1); cgroup $(stat -fc %T /sys/fs/cgroup)"

# gotest_counts LOG: "N passed, N failed, N skipped" from a -test.v log (top-level tests only).
gotest_counts() {
	p=$(grep -c '^--- PASS' "$1")
	f=$(grep -c '^--- FAIL' "$1")
	s=$(grep -c '^--- SKIP' "$1")
	echo "$p passed, $f failed, $s skipped"
}

# run_gotest NAME BINARY TIMEOUT [RUN-REGEX]: tests that the suite marks parallel run one at a
# time (TCG runs code 4-10x slower; parallel scenarios then miss the kubelet's timings).
run_gotest() {
	name=$1 bin=$2 tmo=$3 run=${4:-}
	dir=/tmp/berth-src/test/$name
	mkdir -p "$dir"
	start=$(date +%s)
	if [ -n "$run" ]; then
		(cd "$dir" && "$bin" -test.v -test.count=1 -test.parallel 1 -test.timeout "$tmo" -test.run "$run") >"$res/$name.log" 2>&1
	else
		(cd "$dir" && "$bin" -test.v -test.count=1 -test.parallel 1 -test.timeout "$tmo") >"$res/$name.log" 2>&1
	fi
	rc=$?
	[ "$rc" -eq 0 ] || failed=1
	# The kubelet scenarios name the cgroup driver they ran berth and the kubelet with.
	driver=$(sed -n 's/^e2e\/kubelet: cgroup driver \([a-z]*\).*/, driver \1/p' "$res/$name.log" | head -n 1)
	line="$name: $(gotest_counts "$res/$name.log") (exit $rc, $(($(date +%s) - start))s$driver)"
	echo "$line" | tee -a "$res/counts"
	grep '^--- FAIL' "$res/$name.log" | sed "s/^/  $name /"
}

run_critest() {
	focus=${1:-}
	mkdir -p /tmp/berth-repo
	tar -C /tmp/berth-repo -xf /share/bin/hack.tar || fail "unpack hack.tar"
	start=$(date +%s)
	set -- --parallel 1
	[ -n "$focus" ] && set -- --focus "$focus"
	# ginkgo's default suite timeout (1h) ends the full suite under TCG about half way.
	set -- "$@" -- -ginkgo.timeout=4h
	CRITEST_NO_INSTALL=1 CRITEST_IMAGES_BIN=/share/bin/critest-images CRITEST_NNP=/share/bin/nnp CRITEST_OUT=$res/critest \
		bash /tmp/berth-repo/hack/critest.sh "$@" >"$res/critest.log" 2>&1
	rc=$?
	[ "$rc" -eq 0 ] || failed=1
	line="critest: $(tail -n 1 "$res/critest.log") (exit $rc, $(($(date +%s) - start))s)"
	echo "$line" | tee -a "$res/counts"
	grep -E '^ *\[(failed|panicked|timedout|interrupted|aborted)\]' "$res/critest.log" | sed 's/^/  critest /'
}

failed=0
for s in "$@"; do
	case $mode/$s in
	full/e2e) run_gotest e2e /share/tests/e2e.test 150m ;;
	full/kubelet) run_gotest kubelet /share/tests/kubelet.test 60m ;;
	full/critest) run_critest ;;
	subset/e2e) run_gotest e2e /share/tests/e2e.test 20m \
		'^(TestContainerMemoryLimit|TestOOM|TestOOMScoreAdjApplied|TestStatsContainerAndPod|TestMetricsPodSandboxMetrics|TestUpdateContainerResources|TestUserNSPod|TestUserNSStatusAdvertises)$' ;;
	subset/kubelet) run_gotest kubelet /share/tests/kubelet.test 15m '^TestResourceLimits$' ;;
	subset/critest) run_critest 'stats|OOMKilled|metrics' ;;
	only/e2e) run_gotest e2e /share/tests/e2e.test 150m "$(cat /share/bin/run-regex)" ;;
	only/kubelet) run_gotest kubelet /share/tests/kubelet.test 60m "$(cat /share/bin/run-regex)" ;;
	only/critest) run_critest "$(cat /share/bin/run-regex)" ;;
	*) fail "unknown suite $mode/$s" ;;
	esac
done
echo "suites: done"
cat "$res/counts"
# Any suite that failed fails the run (vm-subset is in make test; vm-test-full's known
# failures are listed in hack/vm/known-failures.txt).
exit "$failed"
