# shellcheck shell=bash
# containerd_config: the containerd 2.x configuration (version 3) that berth is compared with,
# written once for both places that run containerd beside berth: hack/bench-compare.sh (a
# private CRI endpoint for the benchmarks) and hack/cluster/containerd.sh (the kubelet's runtime
# in `hack/cluster.sh up --runtime containerd`). Source it; it only defines functions.
#
#   containerd_config ROOT STATE BIN CERTS_DIR CNI_BIN_DIR CNI_CONF_DIR SANDBOX_IMAGE [CNI_TEMPLATE]
#
# Everything containerd would put in a shared place (/run/containerd's sockets, /var/run/netns,
# /opt/containerd, the NRI socket) is moved under ROOT and STATE or turned off, so that it runs
# beside berth and the node's own containerd, if any. Two places cannot be moved:
# CONTAINERD_SHARED_DIRS, which callers remove at teardown when they created them.
# With CNI_TEMPLATE (a conflist template with {{.PodCIDR}}), containerd writes CNI_CONF_DIR's
# conflist itself once the kubelet hands it the node's pod CIDR (UpdateRuntimeConfig), as
# berth fills in its default bridge's subnet; without it, CNI_CONF_DIR holds a ready conflist.

# CONTAINERD_SHARED_DIRS, deepest first: the shim sockets' dir, hard-coded under /run/containerd
# by the shim API, and libcni's result cache.
# shellcheck disable=SC2034
CONTAINERD_SHARED_DIRS=(/run/containerd/s /run/containerd /var/lib/cni/results /var/lib/cni)

# containerd_restrict_oom tells whether containerd must clamp oom_score_adj: decided once, from
# this process's capabilities, which containerd and runc inherit. Without CAP_SYS_RESOURCE
# (bit 24; this build host's container lacks it) runc cannot set an oom_score_adj lower than its
# own, and the kubelet asks for -997 for Guaranteed pods: every such container would fail to
# start. restrict_oom_score_adj raises what is asked to containerd's own value, as berth does.
containerd_restrict_oom() {
	local eff
	eff=$(awk '/^CapEff:/ { print $2 }' /proc/self/status)
	if (((0x$eff >> 24) & 1)); then echo false; else echo true; fi
}

containerd_config() {
	local root=$1 state=$2 bin=$3 certs=$4 cni_bin=$5 cni_conf=$6 sandbox=$7 template=${8:-}
	cat <<EOT
version = 3
root = "$root"
state = "$state"
disabled_plugins = ["io.containerd.nri.v1.nri", "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.erofs", "io.containerd.differ.v1.erofs"]

[grpc]
  address = "$state/containerd.sock"

[ttrpc]
  address = "$state/containerd.sock.ttrpc"

[debug]
  address = ""

[plugins.'io.containerd.internal.v1.opt']
  path = "$root/opt"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  max_concurrent_downloads = 3
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "$sandbox"
  [plugins.'io.containerd.cri.v1.images'.registry]
    # hosts.toml mirrors (hack/critest/images writes them): registry.k8s.io, docker.io and the
    # rest go to the loopback test registry, as berth's [images] certs_dir does.
    config_path = "$certs"

[plugins.'io.containerd.cri.v1.runtime']
  netns_mounts_under_state_dir = true
  restrict_oom_score_adj = $(containerd_restrict_oom)
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = "runc"
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = "$bin/runc"
        Root = "$state/runc"
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["$cni_bin"]
    conf_dir = "$cni_conf"${template:+
    conf_template = \"$template\"}

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
EOT
}
