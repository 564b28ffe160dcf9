# shellcheck shell=bash
# Extra nodes for hack/cluster.sh (up --nodes N), sourced by it: each is a node container of
# our own making, kind-style, on this one machine. A node is a bash init (pid 1 of its own
# pid, mount, net and uts namespaces) with hostname berth-node-<n>, an address 10.252.0.<n> on
# the host bridge bnodes0 (the host end, 10.252.0.1, is its gateway and the API server's
# address for it), and its own runtime, kubelet and kube-proxy entered into those namespaces
# with nsenter. The runtime is the cluster's (up --runtime): berth, or containerd for the
# reference runs. It keeps its root under $CLUSTER_DIR/nodes/<n> and its state in
# $BERTH_STATE-node<n>; its kubelet's cgroups are under /berth-cluster-node<n>; inside its mount
# namespace /var/lib/kubelet, /var/log/pods and /var/log/containers are private bind mounts.
#
# Node n's pod CIDR is the n-1'th /24 of POD_CIDR (the host's node has the first, from the
# controller-manager): its Node is created with it before its kubelet registers, and its berth
# starts with it as default_subnet (containerd with a conflist for it), so that the routes
# below, set up before any pod runs, fit its first pod too (berth would also follow the
# kubelet's UpdateRuntimeConfig to the new range, keeping pods of the old one on their
# gateway, but pods started before that call would sit in a range no other node routes).
# routes_up routes each CIDR to its node, on the host and in the other nodes.
# The test registry listens on the host's 127.0.0.1 only: a DNAT rule on bnodes0
# (route_localnet on that bridge alone) takes the nodes' mirror address, the gateway, there.

NODE_BRIDGE=bnodes0
NODE_NET=10.252.0 # a /24 no e2e test, bench or the single-node cluster uses
NODE_GW=$NODE_NET.1
NODES_DIR=$CLUSTER_DIR/nodes
NODES_CERTS=$CLUSTER_DIR/nodes-certs.d
# The comment on the host's iptables rules for the nodes (the registry's DNAT, FORWARD
# accepts), so that down finds exactly them.
NODES_IPT_TAG=berth-cluster-nodes

node_name() { echo "$NODE_NAME-$1"; }
node_ip() { echo "$NODE_NET.$1"; }
node_dir() { echo "$NODES_DIR/$1"; }
node_state() { echo "$BERTH_STATE-node$1"; }
node_sock() { echo "$(node_state "$1")/berth.sock"; }
node_ctrd_state() { echo "$(node_state "$1")/containerd"; }
# node_runtime_sock n: what node n's kubelet and crictl talk to.
node_runtime_sock() {
	if [[ $RUNTIME == containerd ]]; then echo "$(node_ctrd_state "$1")/containerd.sock"; else node_sock "$1"; fi
}
# node_runtime_root n: where node n's runtime keeps images, snapshots and containers.
node_runtime_root() { echo "$(node_dir "$1")/$RUNTIME"; }
node_cgroup() { echo "$CGROUP_ROOT-node$1"; }
node_pod_cidr() { echo "${POD_CIDR%.*.*/*}.$(($1 - 1)).0/24"; }

# nodes_count: the number of nodes `up` started (1 when it started only the host's).
nodes_count() {
	[[ -f $CLUSTER_DIR/nodes-count ]] && cat "$CLUSTER_DIR/nodes-count" || echo 1
}

# extra_nodes: the numbers of the node containers, 2..N.
extra_nodes() {
	local n
	for ((n = 2; n <= $(nodes_count); n++)); do echo "$n"; done
}

# --- certificates --------------------------------------------------------------------------

nodes_pki() {
	local n name
	for n in $(extra_nodes); do
		name=$(node_name "$n")
		cert "kubelet-node$n" "system:node:$name" system:nodes
		cert "kubelet-serving-node$n" "system:node:$name" system:nodes "IP:$(node_ip "$n"),DNS:$name"
		kubeconfig "system:node:$name" "kubelet-node$n" "https://$NODE_GW:$API_PORT"
		mkdir -p "$(node_dir "$n")"
		mv "$CLUSTER_DIR/system:node:$name.kubeconfig" "$(node_dir "$n")/kubelet.kubeconfig"
	done
	kubeconfig kube-proxy-nodes kube-proxy "https://$NODE_GW:$API_PORT"
}

# --- the bridge between nodes --------------------------------------------------------------

bridge_up() {
	local port
	ip link add "$NODE_BRIDGE" type bridge
	ip addr add "$NODE_GW/24" dev "$NODE_BRIDGE"
	ip link set "$NODE_BRIDGE" up
	# The registry's port, from the mirrors it wrote for the host's node.
	port=$(sed -n 's|^\[host."http://127.0.0.1:\([0-9]*\)"\]|\1|p' "$CLUSTER_DIR"/certs.d/*/hosts.toml | head -1)
	[[ -n $port ]] || die "cannot tell the registry's port from $CLUSTER_DIR/certs.d"
	cp -r "$CLUSTER_DIR/certs.d" "$NODES_CERTS"
	sed -i "s|http://127.0.0.1:$port|http://$NODE_GW:$port|" "$NODES_CERTS"/*/hosts.toml
	# route_localnet on this bridge only (it goes with the bridge): a DNAT to 127.0.0.1 is dropped
	# as martian otherwise.
	sysctl -qw "net.ipv4.conf.$NODE_BRIDGE.route_localnet=1"
	iptables -t nat -A PREROUTING -i "$NODE_BRIDGE" -d "$NODE_GW" -p tcp --dport "$port" \
		-m comment --comment "$NODES_IPT_TAG" -j DNAT --to-destination "127.0.0.1:$port"
	# Pod traffic between nodes is routed through the host: a FORWARD policy of DROP (Docker's,
	# a firewall's) must not drop it.
	iptables -I FORWARD -i "$NODE_BRIDGE" -m comment --comment "$NODES_IPT_TAG" -j ACCEPT
	iptables -I FORWARD -o "$NODE_BRIDGE" -m comment --comment "$NODES_IPT_TAG" -j ACCEPT
}

bridge_down() {
	delete_tagged_rules "$NODES_IPT_TAG" nat filter
	# The hosts' routes to the nodes' pod CIDRs go with it.
	ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && ip link del "$NODE_BRIDGE"
	true
}

# --- a node --------------------------------------------------------------------------------

# node_init n runs as pid 1 of a node's namespaces (hack/cluster.sh node-init n dir: the dir
# only names the cluster in its command line, for down's kill_leftovers): it hides the
# host's mounts that are not the node's to hold, mounts the kubelet's fixed paths privately,
# names the node, and then only reaps orphans until it is killed (which kills the whole node).
node_init() {
	local n=$1 d m
	d=$(node_dir "$n")
	# The copies of other agents' mounts (pinned netns, rootfs overlays, shm) in this
	# namespace would keep their objects alive after their owners unmounted them on the host.
	awk '$9 == "nsfs" || $9 == "overlay" || $5 ~ /berth|netns|containerd|kubelet|^\/tmp\/./ { print $5 }' \
		/proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
	for m in /var/lib/kubelet /var/log/pods /var/log/containers; do
		mkdir -p "$d/mnt$m"
		mount --bind "$d/mnt$m" "$m"
	done
	hostname "$(node_name "$n")"
	ip link set lo up
	sysctl -qw net.ipv4.ip_forward=1
	[[ -e /proc/sys/net/bridge/bridge-nf-call-iptables ]] && sysctl -qw net.bridge.bridge-nf-call-iptables=1
	touch "$d/init-ready"
	trap 'exit 0' TERM
	# bash reaps every child, adopted ones too, when one exits.
	while :; do
		sleep 60 &
		wait $! || true
	done
}

# node_start n: the node's namespaces (its init), its address on the bridge and its
# default route through the host.
node_start() {
	local n=$1 d pid i exe
	d=$(node_dir "$n")
	# The mount points must exist on the host (snapshot noted which did not).
	mkdir -p /var/lib/kubelet /var/log/pods /var/log/containers "$d"
	rm -f "$d/init-ready"
	setsid unshare --net --mount --pid --uts --fork --mount-proc --propagation private \
		"$REPO/hack/cluster.sh" node-init "$n" "$d" >"$LOGS/node$n-init.log" 2>&1 </dev/null &
	# unshare forks: the node's init is its child, once it runs bash (this script).
	exe=$(readlink -f "$BASH")
	for ((i = 0; i < 50; i++)); do
		pid=$(pgrep -P $! 2>/dev/null | head -1) && [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] && break
		pid=""
		sleep 0.1
	done
	[[ -n $pid ]] || die "node $n's init did not start (see $LOGS/node$n-init.log)"
	echo "$pid $exe" >"$PIDS/node$n.pid"
	# The daemons need its mounts and loopback.
	wait_for "node $n's init" 30 "node$n" test -e "$d/init-ready"
	ip link add "vnode$n" type veth peer name eth0 netns "$pid"
	ip link set "vnode$n" master "$NODE_BRIDGE" up
	nsenter -t "$pid" -n ip addr add "$(node_ip "$n")/24" dev eth0
	nsenter -t "$pid" -n ip link set eth0 up
	nsenter -t "$pid" -n ip route add default via "$NODE_GW"
	service_guard nsenter -t "$pid" -n
}

# node_bg n name cmd...: start_bg inside node n's namespaces. nsenter forks to enter the pid
# namespace: the pid recorded is its child's, which runs the binary.
node_bg() {
	local n=$1 name=$2 init exe i pid
	shift 2
	init=$(pid_of "node$n") || die "node $n is not running"
	exe=$(readlink -f "$1")
	setsid nsenter -t "$init" -m -n -p -u -- "$@" >>"$LOGS/node$n-$name.log" 2>&1 </dev/null &
	for ((i = 0; i < 100; i++)); do
		for pid in $(pgrep -P $! 2>/dev/null); do
			if [[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]]; then
				echo "$pid $exe" >"$PIDS/node$n-$name.pid"
				return 0
			fi
		done
		sleep 0.1
	done
	tail -20 "$LOGS/node$n-$name.log" >&2
	die "$name did not start on node $n"
}

# node_runtime n: node n's container runtime, the cluster's.
node_runtime() {
	if [[ $RUNTIME == containerd ]]; then node_containerd "$1"; else node_berth "$1"; fi
}

node_berth() {
	local n=$1 d state
	d=$(node_dir "$n")
	state=$(node_state "$n")
	mkdir -p "$d/berth" "$state" "$d/net.d"
		# Its bridge lives in the node's netns; its subnet is the node's pod CIDR (nodes_up).
	cat >"$d/berth.toml" <<EOT
root = "$d/berth"
state = "$state"
listen = "$(node_sock "$n")"
shim_binary = "$BERTH_SHIM_BIN"

[images]
certs_dir = "$NODES_CERTS"

[nri]
socket_path = "$state/nri.sock"

[network]
cni_conf_dir = "$d/net.d"
default_bridge = "bcluster$n"
default_subnet = "$(node_pod_cidr "$n")"
EOT
	node_bg "$n" berth "$BERTH_BIN" --config "$d/berth.toml"
	wait_for "berth on node $n" 60 "node$n-berth" crictl --runtime-endpoint "unix://$(node_sock "$n")" --timeout 2s version
}

# node_containerd n: containerd as the host's node runs it (hack/cluster/containerd.sh), with
# the node's dirs, its registry mirrors and a ready conflist for the node's pod CIDR (known
# before its kubelet starts, see above) on a bridge in the node's netns.
node_containerd() {
	local n=$1 d root state
	d=$(node_dir "$n")
	root=$(node_runtime_root "$n")
	state=$(node_ctrd_state "$n")
	mkdir -p "$root" "$state" "$d/net.d"
	ctrd_conflist "bcluster$n" "$(node_pod_cidr "$n")" "$root/ipam" >"$d/net.d/10-berth-cluster.conflist"
	containerd_config "$root" "$state" "$CTRD_BIN" "$NODES_CERTS" "$CNI_BIN_DIR" "$d/net.d" \
		"$CTRD_SANDBOX" >"$d/containerd.toml"
	# The shim is found on PATH; runc is named in the runtime's options.
	PATH=$CTRD_BIN:$PATH node_bg "$n" containerd "$CTRD_BIN/containerd" --config "$d/containerd.toml"
	wait_for "containerd on node $n" 60 "node$n-containerd" \
		crictl --runtime-endpoint "unix://$(node_runtime_sock "$n")" --timeout 2s version
}

node_kubelet() {
	local n=$1 d
	d=$(node_dir "$n")
	cgroup_root "$(node_cgroup "$n")"
	mkdir -p "$d/kubelet" "$d/pod-logs"
	kubelet_config "$(node_runtime_sock "$n")" "$(node_cgroup "$n")" "$d/pod-logs" "kubelet-serving-node$n" >"$d/kubelet.yaml"
	node_bg "$n" kubelet "$BIN/kubelet" --config="$d/kubelet.yaml" \
		--kubeconfig="$d/kubelet.kubeconfig" --hostname-override="$(node_name "$n")" --node-ip="$(node_ip "$n")" \
		--root-dir="$d/kubelet" --cert-dir="$d/kubelet/pki" -v=2
}

node_proxy() {
	local n=$1 d
	d=$(node_dir "$n")
	cat >"$d/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CLUSTER_DIR/kube-proxy-nodes.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $(node_name "$n")
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOT
	node_bg "$n" kube-proxy "$BIN/kube-proxy" --config="$d/kube-proxy.yaml"
}

# nodes_up starts every extra node, the slow parts (berth, kubelet) of all nodes at once.
nodes_up() {
	local n
	[[ $(nodes_count) -gt 1 ]] || return 0
	log "starting nodes $(extra_nodes | paste -sd' ') on $NODE_BRIDGE"
	bridge_up
	wait_for "node $NODE_NAME's pod CIDR" 60 kube-controller-manager has_cidr "$NODE_NAME"
	[[ $(node_cidr "$NODE_NAME") == "$(node_pod_cidr 1)" ]] ||
		die "node $NODE_NAME has pod CIDR $(node_cidr "$NODE_NAME"), not $(node_pod_cidr 1): the nodes' CIDRs would collide"
	for n in $(extra_nodes); do
		"$BIN/kubectl" --kubeconfig "$KCFG" apply -f - >/dev/null <<EOT
apiVersion: v1
kind: Node
metadata: {name: $(node_name "$n")}
spec: {podCIDR: $(node_pod_cidr "$n"), podCIDRs: [$(node_pod_cidr "$n")]}
EOT
	done
	for n in $(extra_nodes); do
		node_start "$n"
		node_runtime "$n"
		node_kubelet "$n"
	done
	for n in $(extra_nodes); do
		wait_for "node $(node_name "$n") registered" 120 "node$n-kubelet" \
			"$BIN/kubectl" --kubeconfig "$KCFG" get node "$(node_name "$n")"
		node_proxy "$n"
	done
	for n in $(extra_nodes); do
		wait_for "node $(node_name "$n") Ready" 180 "node$n-kubelet" node_ready "$(node_name "$n")"
	done
	routes_up
}

# node_cidr name: the node's pod CIDR (the controller-manager's allocation).
node_cidr() {
	"$BIN/kubectl" --kubeconfig "$KCFG" get node "$1" -o jsonpath='{.spec.podCIDR}'
}

has_cidr() { [[ -n $(node_cidr "$1") ]]; }

# routes_up routes each node's pod CIDR to its address, on the host and in every other
# node (nodes reach the host's pods through their default route, the host).
routes_up() {
	local n m cidr
	for n in $(extra_nodes); do
		cidr=$(node_cidr "$(node_name "$n")")
		[[ -n $cidr ]] || die "node $(node_name "$n") has no pod CIDR"
		ip route replace "$cidr" via "$(node_ip "$n")" dev "$NODE_BRIDGE"
		for m in $(extra_nodes); do
			[[ $m == "$n" ]] && continue
			nsenter -t "$(pid_of "node$m")" -n ip route replace "$cidr" via "$(node_ip "$n")"
		done
	done
}

# node_down n: the node's pods removed through its runtime once its kubelet is gone, its
# daemons stopped, then its init killed, which kills whatever is left in its pid namespace
# and takes its netns (bridge, veth, iptables rules) and mount namespace with it.
node_down() {
	local n=$1 sock pid i
	sock=$(node_runtime_sock "$n")
	stop_procs "node$n-kube-proxy" "node$n-kubelet"
	if pid_of "node$n-$RUNTIME" >/dev/null; then
		{ crictl_at "$sock" pods -q; crictl_at "$sock" ps -aq; } 2>/dev/null >>"$(node_dir "$n")/ids"
		crictl_at "$sock" rmp -fa >>"$LOGS/down.log" 2>&1 || log "node $n: crictl rmp -fa failed (see $LOGS/down.log)"
	fi
	stop_procs "node$n-$RUNTIME"
	if pid=$(pid_of "node$n"); then
		kill -KILL "$pid"
		for ((i = 0; i < 100; i++)); do
			[[ -e /proc/$pid ]] || break
			sleep 0.1
		done
	fi
	# The netns outlives its processes while their orphaned TCP sockets still retransmit (its
	# veth with it): deleting the veth leaves that netns without interfaces, and the kernel
	# frees it once those sockets time out.
	for ((i = 0; i < 50; i++)); do
		ip link show "vnode$n" >/dev/null 2>&1 || break
		sleep 0.1
	done
	ip link del "vnode$n" 2>/dev/null
	remove_cgroups "$(node_cgroup "$n")"
}

# nodes_down takes the nodes down; nodes_gone, once the control plane is stopped, removes the
# bridge and checks each node for leaks.
nodes_down() {
	local n
	for n in $(extra_nodes); do node_down "$n"; done
}

nodes_gone() {
	local n rc=0 d
	bridge_down
	for n in $(extra_nodes); do
		d=$(node_dir "$n")
		sort -u "$d/ids" -o "$d/ids" 2>/dev/null || touch "$d/ids"
		"$REPO/hack/check-leaks.sh" --state "$(node_state "$n")" --root "$(node_runtime_root "$n")" --ids "$d/ids" || rc=1
		rm -rf "$(node_state "$n")"
	done
	return "$rc"
}

# node_ctl n start|stop|kill berth|containerd|kubelet|kube-proxy: for the multi-node scenarios
# (a node's berth killed and restarted, a node's kubelet stopped and started again). The
# runtime named must be the cluster's.
node_ctl() {
	local n=$1 op=$2 what=$3 pid
	[[ $n =~ ^[0-9]+$ ]] && ((n >= 2 && n <= $(nodes_count))) || die "no node $n (extra nodes: $(extra_nodes | paste -sd' '))"
	BIN=$(<"$CLUSTER_DIR/bin-dir")
	runtime_load
	[[ $what != berth && $what != containerd || $what == "$RUNTIME" ]] || die "node $n runs $RUNTIME, not $what"
	case $op in
	stop) stop_procs "node$n-$what" ;;
	kill)
		pid=$(pid_of "node$n-$what") || die "$what does not run on node $n"
		kill -KILL "$pid"
		while [[ -e /proc/$pid ]]; do sleep 0.1; done
		;;
	start)
		pid_of "node$n-$what" >/dev/null && die "$what already runs on node $n"
		case $what in
		berth) node_berth "$n" ;;
		containerd) runtime_preflight && node_containerd "$n" ;;
		kubelet) node_kubelet "$n" ;;
		kube-proxy) node_proxy "$n" ;;
		*) die "node $n has no $what" ;;
		esac
		;;
	*) die "usage: cluster.sh node N start|stop|kill berth|containerd|kubelet|kube-proxy" ;;
	esac
}

nodes_status() {
	local n p pid
	for n in $(extra_nodes); do
		for p in "node$n" "node$n-$RUNTIME" "node$n-kubelet" "node$n-kube-proxy"; do
			if pid=$(pid_of "$p"); then
				printf '%-24s running (pid %s)\n' "$p" "$pid"
			else
				printf '%-24s stopped\n' "$p"
			fi
		done
	done
}
