#!/usr/bin/env bash
# Builds the kubelet (berth's real client) from k8s.io/kubernetes with the Go
# toolchain, through the wrapper module in hack/kubelet, idempotently.
#
# k8s.io/kubernetes cannot be `go install`ed directly: its go.mod replaces the
# k8s.io staging modules with ./staging paths that its published zip lacks.
# hack/kubelet/go.mod replaces each of them with its matching v0.X.Y release.
#
# Env: KUBELET_VERSION (v1.37.2), KUBELET_BIN (/usr/local/bin/kubelet).
# The build is large: several minutes and ~2 GB of RAM on two cores.
set -euo pipefail

KUBELET_VERSION=${KUBELET_VERSION:-v1.37.2}
KUBELET_BIN=${KUBELET_BIN:-/usr/local/bin/kubelet}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

log() { echo "kubelet.sh: $*" >&2; }

if "$KUBELET_BIN" --version 2>/dev/null | grep -qx "Kubernetes $KUBELET_VERSION"; then
	log "$KUBELET_BIN is already $KUBELET_VERSION"
	exit 0
fi

if ! grep -q "k8s.io/kubernetes $KUBELET_VERSION" "$here/kubelet/go.mod"; then
	echo "kubelet.sh: hack/kubelet/go.mod does not pin k8s.io/kubernetes $KUBELET_VERSION" >&2
	exit 1
fi

ver=${KUBELET_VERSION#v}
major=${ver%%.*}
minor=${ver#*.}
minor=${minor%%.*}
# A fixed commit string: this build is from the module proxy's zip, not git.
commit=${KUBELET_GIT_COMMIT:-0000000000000000000000000000000000000000}
date=$(date -u +'%Y-%m-%dT%H:%M:%SZ')

ldflags=""
# component-base is what `kubelet --version` and the node status report;
# client-go's copy is set too, as the upstream build does.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
	ldflags+=" -X $pkg.gitVersion=$KUBELET_VERSION"
	ldflags+=" -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
	ldflags+=" -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=clean"
	ldflags+=" -X $pkg.buildDate=$date"
done

tmp=$(mktemp "${KUBELET_BIN}.XXXXXX")
trap 'rm -f "$tmp"' EXIT

log "building kubelet $KUBELET_VERSION (this takes several minutes)"
# Upstream builds the kubelet without cgo; -trimpath keeps paths out of the binary.
(cd "$here/kubelet" && CGO_ENABLED=0 go build -mod=readonly -buildvcs=false -trimpath \
	-ldflags "-s -w $ldflags" -o "$tmp" k8s.io/kubernetes/cmd/kubelet)
chmod 0755 "$tmp"
mv -f "$tmp" "$KUBELET_BIN"
trap - EXIT
"$KUBELET_BIN" --version
