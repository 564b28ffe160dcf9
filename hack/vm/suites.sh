#!/usr/bin/env bash
# Runs berth's test suites inside the cgroup v2 + systemd VM (hack/vm/run.sh): the e2e suite
# (test/e2e), the kubelet scenarios (test/e2e/kubelet) and critest (hack/critest.sh), compiled
# on the host, as the guest has no Go. Each suite's log and a counts line land in the run's
# results (_output/vm/<time>/), and the guest prints "SUITE: N passed, N failed, N skipped".
#
#	hack/vm/suites.sh [--subset | --run REGEX] [SUITE...]      SUITE: e2e, kubelet, critest (default all)
#
# --subset runs the part that differs most between cgroup v1 and v2 (cgroups, resources, stats,
# OOM, user namespaces, one kubelet scenario, critest's resource and stats specs); `make
# vm-subset`. --run runs only the tests (critest: the specs) that REGEX matches, e.g. to check
# fixes to a full run's failures. The full run is `make vm-test-full` (VM_TIMEOUT defaults to 3 hours there).
# Needs the CNI plugins (hack/cni.sh), critest (hack/critest.sh) and the kubelet (hack/kubelet.sh)
# on the host: make deps.
set -euo pipefail
cd "$(dirname "$0")/../.."

mode=full
run=
case ${1:-} in
--subset)
	mode=subset
	shift
	;;
--run)
	[ $# -ge 2 ] || { echo "vm-suites: --run needs a regular expression" >&2; exit 2; }
	mode=only run=$2
	shift 2
	;;
esac
suites=${*:-e2e kubelet critest}

log() { echo "vm-suites: $*" >&2; }

tmp=$(mktemp -d /tmp/berth-vm-suites.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

bins="hack/vm/suites-guest.sh"
if [ -n "$run" ]; then
	# In a file, not on the guest's command line, which /bin/sh would parse.
	printf '%s\n' "$run" >"$tmp/run-regex"
	bins+=" $tmp/run-regex"
fi
tests=""
for s in $suites; do
	case $s in
	e2e)
		log "compiling the e2e suite"
		go test -c -tags seccomp -o "$tmp/e2e.test" ./test/e2e
		tests+=" $tmp/e2e.test"
		;;
	kubelet)
		[ -x /usr/local/bin/kubelet ] || { log "no /usr/local/bin/kubelet: run hack/kubelet.sh"; exit 1; }
		log "compiling the kubelet scenarios"
		go test -c -tags seccomp -o "$tmp/kubelet.test" ./test/e2e/kubelet
		tests+=" $tmp/kubelet.test"
		bins+=" /usr/local/bin/kubelet"
		;;
	critest)
		[ -x /usr/local/bin/critest ] || { log "no /usr/local/bin/critest: run hack/critest.sh once"; exit 1; }
		go build -o "$tmp/critest-images" ./hack/critest/images
		"$tmp/critest-images" --write-nnp "$tmp/nnp"
		tar -cf "$tmp/hack.tar" hack/critest.sh hack/lib.sh hack/check-leaks.sh hack/critest/skips.txt
		bins+=" $tmp/critest-images $tmp/nnp $tmp/hack.tar /usr/local/bin/critest"
		;;
	*)
		log "unknown suite $s (e2e, kubelet, critest)"
		exit 2
		;;
	esac
done
[ -x /opt/cni/bin/bridge ] || { log "no CNI plugins in /opt/cni/bin: run hack/cni.sh"; exit 1; }
tar -C /opt/cni/bin -cf "$tmp/cni.tar" .
bins+=" $tmp/cni.tar"

# A loaded host (other VMs, builds) can take minutes to boot the guest under TCG.
VM_BOOT_TIMEOUT=${VM_BOOT_TIMEOUT:-900} VM_BINS="$bins" VM_TESTS="$tests" hack/vm/run.sh sh /share/bin/suites-guest.sh "$mode" "$suites"
