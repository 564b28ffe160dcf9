# shellcheck shell=bash
# The kubelet's runtime for hack/cluster.sh: berth (the default) or, with `up --runtime
# containerd`, containerd v2.4 with its runc v2 shim and runc v1.5 (hack/containerd.sh builds
# them, cached), the reference the conformance results are compared with
# (hack/conformance/results-*-containerd.md). Sourced by hack/cluster.sh after its layout
# variables; cluster.sh calls the runtime_* hooks and nothing else of this file.
#
# containerd gets the cluster's layout: its root under CLUSTER_DIR, its state (sockets, pinned
# netns, runc's state) under BERTH_STATE, the same bridge (BRIDGE) and pod CIDR (the Node's,
# through a conflist template as berth's default bridge takes it), the same registry mirrors
# (CLUSTER_DIR/certs.d), the cgroupfs driver, and the config bench-compare uses
# (hack/containerd-config.sh), so that it meets the node's limits the same way.

# shellcheck source=hack/containerd-config.sh
source "$REPO/hack/containerd-config.sh"

RUNTIME=berth
CTRD_ROOT=$CLUSTER_DIR/containerd
CTRD_STATE=$BERTH_STATE/containerd
CTRD_SOCK=$CTRD_STATE/containerd.sock
# containerd's sandbox image: one the cluster's registry always serves (hack/critest/images).
CTRD_SANDBOX=registry.k8s.io/pause:3.9
CNI_BIN_DIR=${CNI_BIN_DIR:-/opt/cni/bin}
# What the kubelet talks to and what the scoped leak check looks under: berth's unless
# runtime_select says otherwise.
# shellcheck disable=SC2034 # cluster.sh reads them
RUNTIME_SOCK=$BERTH_SOCK
RUNTIME_ROOT=$BERTH_ROOT

# runtime_select name: the runtime of this cluster, from `up --runtime` or, for down and
# status, from what `up` recorded.
# shellcheck disable=SC2034 # cluster.sh reads RUNTIME_SOCK and RUNTIME_ROOT
runtime_select() {
	case $1 in
	berth) RUNTIME=berth RUNTIME_SOCK=$BERTH_SOCK RUNTIME_ROOT=$BERTH_ROOT ;;
	containerd) RUNTIME=containerd RUNTIME_SOCK=$CTRD_SOCK RUNTIME_ROOT=$CTRD_ROOT ;;
	*) die "unknown runtime $1 (berth or containerd)" ;;
	esac
}

# runtime_load picks the runtime `up` recorded in CLUSTER_DIR, if any.
runtime_load() {
	[[ -f $CLUSTER_DIR/runtime ]] && runtime_select "$(<"$CLUSTER_DIR/runtime")"
	true
}

# runtime_snapshot records the runtime for down and status and, for containerd, the shared
# directories it would create (restore_node removes them if `up` found them absent and they
# are empty again).
runtime_snapshot() {
	local d
	echo "$RUNTIME" >"$CLUSTER_DIR/runtime"
	[[ $RUNTIME == containerd ]] || return 0
	for d in "${CONTAINERD_SHARED_DIRS[@]}"; do
		[[ -e $d ]] || echo "$d"
	done >>"$CLUSTER_DIR/before/absent"
}

runtime_preflight() {
	[[ $RUNTIME == containerd ]] || return 0
	[[ -x $CNI_BIN_DIR/bridge && -x $CNI_BIN_DIR/host-local && -x $CNI_BIN_DIR/portmap && -x $CNI_BIN_DIR/loopback ]] ||
		die "CNI plugins missing in $CNI_BIN_DIR (hack/deps.sh installs them)"
	CTRD_BIN=$("$REPO/hack/containerd.sh")
}

start_runtime() {
	if [[ $RUNTIME == containerd ]]; then start_containerd; else start_berth; fi
}

# ctrd_conflist bridge subnet ipam_dir: containerd's pod network, the bridge berth's default
# network makes (a gateway, masquerade, hairpin, host ports), for the host's node (its subnet
# a template) and the node containers.
ctrd_conflist() {
	cat <<EOT
{
  "cniVersion": "1.0.0",
  "name": "berth-cluster",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$1",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$2"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$3"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}, "snat": true}
  ]
}
EOT
}

start_containerd() {
	mkdir -p "$CTRD_ROOT" "$CTRD_STATE" "$CLUSTER_DIR/net.d"
	# The bridge berth's default network would use, with the Node's pod CIDR: containerd writes
	# the conflist from this once the kubelet passes the CIDR on (the node is not Ready before).
	ctrd_conflist "$BRIDGE" '{{.PodCIDR}}' "$CTRD_ROOT/ipam" >"$CLUSTER_DIR/cni.template"
	containerd_config "$CTRD_ROOT" "$CTRD_STATE" "$CTRD_BIN" "$CLUSTER_DIR/certs.d" "$CNI_BIN_DIR" \
		"$CLUSTER_DIR/net.d" "$CTRD_SANDBOX" "$CLUSTER_DIR/cni.template" >"$CLUSTER_DIR/containerd.toml"
	# The shim is found on PATH; runc is named in the runtime's options.
	PATH=$CTRD_BIN:$PATH start_bg containerd "$CTRD_BIN/containerd" --config "$CLUSTER_DIR/containerd.toml"
	wait_for "containerd on $CTRD_SOCK" 60 containerd crictl --runtime-endpoint "unix://$CTRD_SOCK" --timeout 2s version
}
