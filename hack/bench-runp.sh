#!/usr/bin/env bash
# RunPodSandbox latency with pod networking (CNI ADD on a private bridge) against host-network
# pods measured by the same agent in the same run. Prints the median of 20 calls each and the
# ratio. Builds the binaries unless BERTH_BIN and BERTH_SHIM_BIN are set. Needs root.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${BERTH_BIN:-}" ] || [ -z "${BERTH_SHIM_BIN:-}" ]; then
	make build >/dev/null
	export BERTH_BIN=$PWD/bin/berth BERTH_SHIM_BIN=$PWD/bin/berth-shim
fi
out=$(BERTH_BENCH=1 go test -tags seccomp -count=1 -run '^TestBenchRunPodSandbox$' -v ./test/e2e/ 2>&1) || { echo "$out"; exit 1; }
echo "$out" | grep -E '^RunPodSandbox median' || { echo "$out"; exit 1; }
