#!/usr/bin/env bash
# Builds the standard CNI plugins from github.com/containernetworking/plugins at a pinned
# release into /opt/cni/bin with the Go toolchain, idempotently (the installed release is
# recorded in $CNI_BIN/.berth-version; a rerun with the same release and all plugins present
# does nothing).
set -euo pipefail

CNI_PLUGINS_VERSION=${CNI_PLUGINS_VERSION:-v1.10.0}
CNI_BIN=${CNI_BIN:-/opt/cni/bin}
MODULE=github.com/containernetworking/plugins
# The plugins berth's default network and its tests use, plus the common extras the kubelet's
# network configs name (bandwidth for kubernetes.io/ingress-bandwidth, firewall, tuning).
PLUGINS=(
	plugins/main/bridge
	plugins/main/loopback
	plugins/main/ptp
	plugins/ipam/host-local
	plugins/meta/portmap
	plugins/meta/bandwidth
	plugins/meta/firewall
	plugins/meta/tuning
)

log() { echo "cni: $*" >&2; }

if ! command -v go >/dev/null; then
	echo "cni: the Go toolchain is required (expected at /usr/local/go/bin)" >&2
	exit 1
fi
# portmap, bridge (ipMasq) and firewall program iptables.
if ! command -v iptables >/dev/null; then
	echo "cni: iptables is required (apt-get install iptables, or run hack/deps.sh)" >&2
	exit 1
fi

all_present() {
	local p
	for p in "${PLUGINS[@]}"; do
		[ -x "$CNI_BIN/$(basename "$p")" ] || return 1
	done
}

if [ "$(cat "$CNI_BIN/.berth-version" 2>/dev/null)" = "$CNI_PLUGINS_VERSION" ] && all_present; then
	log "plugins $CNI_PLUGINS_VERSION already in $CNI_BIN"
	exit 0
fi

mkdir -p "$CNI_BIN"
# The plugins' go.mod may carry replace directives, which `go install pkg@version` refuses, so
# build inside a writable copy of the downloaded module instead; its own go.mod/go.sum pin
# every dependency.
log "downloading $MODULE@$CNI_PLUGINS_VERSION"
src=$(go mod download -json "$MODULE@$CNI_PLUGINS_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
if [ -z "$src" ] || [ ! -d "$src" ]; then
	echo "cni: go mod download $MODULE@$CNI_PLUGINS_VERSION gave no directory" >&2
	exit 1
fi
work=$(mktemp -d)
trap 'chmod -R u+w "$work" 2>/dev/null; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"

ldflags="-s -w -X github.com/containernetworking/plugins/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION"
for p in "${PLUGINS[@]}"; do
	name=$(basename "$p")
	log "building $name"
	# Build to a temp name and rename: a pod being set up never executes a half-written plugin.
	(cd "$work" && CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$CNI_BIN/.$name.new" "./$p")
	mv -f "$CNI_BIN/.$name.new" "$CNI_BIN/$name"
done
echo "$CNI_PLUGINS_VERSION" >"$CNI_BIN/.berth-version"
log "installed plugins $CNI_PLUGINS_VERSION in $CNI_BIN"
