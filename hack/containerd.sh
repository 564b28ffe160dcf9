#!/usr/bin/env bash
# containerd.sh: builds the reference runtime that hack/bench-compare.sh measures berth against:
# containerd, its runc shim and runc, pinned, from the Go module proxy, into a cache dir.
# Each module is built by one `go install`; nothing is rebuilt when the binaries are already there.
# Prints the bin dir on stdout (progress goes to stderr).
set -euo pipefail
export PATH=$PATH:/usr/local/go/bin

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
GO=${GO:-go}
CACHE=${BERTH_CACHE:-/var/cache/berth}
bin=$CACHE/containerd-$CONTAINERD_VERSION-runc-$RUNC_VERSION/bin
mkdir -p "$bin"

if [[ ! -x $bin/containerd || ! -x $bin/containerd-shim-runc-v2 ]]; then
	echo "containerd.sh: building containerd $CONTAINERD_VERSION into $bin" >&2
	start=$(date +%s)
	GOBIN=$bin "$GO" install \
		"github.com/containerd/containerd/v2/cmd/containerd@$CONTAINERD_VERSION" \
		"github.com/containerd/containerd/v2/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION" >&2
	echo "containerd.sh: containerd built in $(($(date +%s) - start))s" >&2
fi
if [[ ! -x $bin/runc ]]; then
	echo "containerd.sh: building runc $RUNC_VERSION into $bin" >&2
	start=$(date +%s)
	# runc's seccomp support needs cgo and libseccomp, as berth's does.
	GOBIN=$bin CGO_ENABLED=1 "$GO" install -tags seccomp "github.com/opencontainers/runc@$RUNC_VERSION" >&2
	echo "containerd.sh: runc built in $(($(date +%s) - start))s" >&2
fi
echo "$bin"
