#!/usr/bin/env bash
# Installs every system dependency of berth's build and tests, idempotently:
# Debian packages, then Go-built tools (crictl) pinned to known versions.
set -euo pipefail

CRI_TOOLS_VERSION=${CRI_TOOLS_VERSION:-v1.37.0}
TOOLS_BIN=${TOOLS_BIN:-/usr/local/bin}

log() { echo "deps: $*" >&2; }

if [ "$(id -u)" != 0 ]; then
	echo "deps: must run as root (apt-get, /usr/local/bin)" >&2
	exit 1
fi

# libseccomp-dev: libcontainer's seccomp (cgo). busybox: the dynamically linked
# one that test images are built from. iptables/iproute2: networking tests. criu:
# CheckpointContainer and restores (libcontainer runs `criu swrk`); the agent decides at
# startup with `criu check` whether this kernel allows them.
# crun: an external OCI runtime for the runtime handler tests (`[[runtime.handlers]]`).
# curl, netcat-openbsd, hostname and bind9-dnsutils (dig): copied with their libraries into the
# conformance suite's agnhost and glibc-dns-testing images (hack/critest/images/e2e.go), whose
# unit test runs them there. bzip2: unpacks the busybox release hack/conformance.sh builds.
apt_packages=(gcc libc6-dev make git pkg-config libseccomp-dev busybox iptables iproute2 util-linux ca-certificates crun criu curl hostname netcat-openbsd bind9-dnsutils bzip2)
missing=()
for p in "${apt_packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	log "installing ${missing[*]}"
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null; then
	echo "deps: the Go toolchain is required (expected at /usr/local/go/bin)" >&2
	exit 1
fi

# crictl from cri-tools, built with the Go toolchain (no prebuilt downloads here).
want=${CRI_TOOLS_VERSION#v}
if ! "$TOOLS_BIN/crictl" --version 2>/dev/null | grep -q "$want"; then
	log "building crictl $CRI_TOOLS_VERSION"
	GOBIN="$TOOLS_BIN" go install \
		-ldflags "-X sigs.k8s.io/cri-tools/pkg/version.Version=$want" \
		"sigs.k8s.io/cri-tools/cmd/crictl@$CRI_TOOLS_VERSION"
fi
# crictl talks to berth unless the node already has a crictl config.
if [ ! -e /etc/crictl.yaml ]; then
	printf 'runtime-endpoint: unix:///run/berth/berth.sock\nimage-endpoint: unix:///run/berth/berth.sock\ntimeout: 60\n' >/etc/crictl.yaml
	log "wrote /etc/crictl.yaml (berth's socket)"
fi

# The standard CNI plugins (bridge, host-local, portmap, ...) into /opt/cni/bin.
"$(dirname "$0")/cni.sh"
log "ok"
