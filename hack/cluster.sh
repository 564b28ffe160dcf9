#!/usr/bin/env bash
# A single-node Kubernetes cluster on berth: etcd, kube-apiserver, kube-controller-manager,
# kube-scheduler, a kubelet and kube-proxy (iptables mode), all at KUBE_VERSION, built from
# the wrapper module in hack/kubelet, with a berth agent of its own as the kubelet's runtime
# and the project's test registry on 127.0.0.1 behind registry.k8s.io/docker.io mirrors, so
# that pods run offline.
#
#   hack/cluster.sh build    build (or find cached) the components; kubectl lands in bin/
#   hack/cluster.sh built    print the components' directory if they are built, else fail
#   hack/cluster.sh up [--nodes N] [--runtime berth|containerd]
#                            build, start everything, wait for the Nodes to be Ready;
#                            prints KUBECONFIG=<path> last. N-1 extra nodes (node containers,
#                            hack/cluster-nodes.sh) join the host's node; N defaults to 1.
#                            --runtime containerd runs containerd v2.4 + runc instead of berth
#                            on every node (hack/cluster/containerd.sh, hack/cluster-nodes.sh)
#   hack/cluster.sh down     stop everything `up` started, by pid, and remove what it made
#   hack/cluster.sh status   tell what runs
#   hack/cluster.sh node N start|stop|kill berth|containerd|kubelet|kube-proxy
#                            one daemon of extra node N (the multi-node scenarios)
#
# Env: CLUSTER_DIR (state, /var/lib/berth-cluster), KUBE_VERSION (v1.37.2),
#      K8S_BIN_CACHE (/var/cache/berth), BERTH_BIN, BERTH_SHIM_BIN, GO,
#      CLUSTER_AGNHOST (an agnhost binary: serve e2e.test's images too; hack/conformance.sh).
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=hack/kube-version.sh
source "$REPO/hack/kube-version.sh"
GO=${GO:-go}
CLUSTER_DIR=${CLUSTER_DIR:-/var/lib/berth-cluster}
K8S_BIN_CACHE=${K8S_BIN_CACHE:-/var/cache/berth}
BERTH_BIN=${BERTH_BIN:-$REPO/bin/berth}
BERTH_SHIM_BIN=${BERTH_SHIM_BIN:-$REPO/bin/berth-shim}
MOD=$REPO/hack/kubelet

log() { echo "cluster.sh: $*" >&2; }
die() { log "$*"; exit 1; }

# --- build ---------------------------------------------------------------------------------

COMPONENTS=(etcd kube-apiserver kube-controller-manager kube-scheduler kube-proxy kubectl kubelet)
DNS_MOD=$REPO/hack/coredns

# bin_dir is the cache directory for this version and this module graph: a change to the
# wrapper module (a new dependency pin) gets a fresh directory, a rerun finds the old one.
bin_dir() {
	local sum
	sum=$(cat "$MOD/go.mod" "$MOD/go.sum" "$MOD/cmd/etcd/main.go" | sha256sum | cut -c1-12)
	echo "$K8S_BIN_CACHE/k8s-$KUBE_VERSION-$sum"
}

# dns_dir is CoreDNS's cache directory, keyed by its own module (hack/coredns).
dns_dir() {
	local sum ver
	sum=$(cat "$DNS_MOD/go.mod" "$DNS_MOD/go.sum" "$DNS_MOD/main.go" | sha256sum | cut -c1-12)
	ver=$(sed -n 's|.*github.com/coredns/coredns \(v[^ ]*\).*|\1|p' "$DNS_MOD/go.mod" | head -1)
	echo "$K8S_BIN_CACHE/coredns-$ver-$sum"
}


# build_k8s makes every Kubernetes component and etcd in one `go build` (the packages share most
# of their graph, so one invocation compiles each dependency once) into the cache directory,
# unless it is complete.
build() {
	build_k8s
	build_dns
	ms_build
}

build_k8s() {
	local dir
	dir=$(bin_dir)
	if [[ -f $dir/.complete ]]; then
		link_kubectl "$dir"
		return 0
	fi
	grep -q "k8s.io/kubernetes $KUBE_VERSION" "$MOD/go.mod" ||
		die "hack/kubelet/go.mod does not pin k8s.io/kubernetes $KUBE_VERSION"
	mkdir -p "$dir"
	log "building ${COMPONENTS[*]} $KUBE_VERSION into $dir (cold: tens of minutes on two cores)"
	local start=$SECONDS
	# Upstream builds these without cgo; -trimpath keeps paths out of the binaries.
	(cd "$MOD" && CGO_ENABLED=0 "$GO" build -mod=readonly -buildvcs=false -trimpath \
		-ldflags "-s -w $(version_ldflags)" -o "$dir/" \
		./cmd/etcd k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
		k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kube-proxy \
		k8s.io/kubernetes/cmd/kubectl k8s.io/kubernetes/cmd/kubelet)
	touch "$dir/.complete"
	log "built in $((SECONDS - start))s"
	link_kubectl "$dir"
}

# build_dns builds CoreDNS, which has a module of its own (see hack/coredns/main.go).
build_dns() {
	local dir start=$SECONDS
	dir=$(dns_dir)
	[[ -x $dir/coredns ]] && return 0
	mkdir -p "$dir"
	log "building CoreDNS into $dir"
	(cd "$DNS_MOD" && CGO_ENABLED=0 "$GO" build -mod=readonly -buildvcs=false -trimpath \
		-ldflags "-s -w" -o "$dir/coredns.tmp" .)
	mv "$dir/coredns.tmp" "$dir/coredns"
	log "built CoreDNS in $((SECONDS - start))s"
}

link_kubectl() {
	mkdir -p "$REPO/bin"
	ln -sfn "$1/kubectl" "$REPO/bin/kubectl"
}

# --- layout --------------------------------------------------------------------------------

PKI=$CLUSTER_DIR/pki
LOGS=$CLUSTER_DIR/logs
PIDS=$CLUSTER_DIR/pids
KCFG=$CLUSTER_DIR/kubeconfig
# berth's state dir holds shim sockets (<state>/shims/<64-hex id>/shim.sock must fit the
# 108-byte socket path limit) and belongs on tmpfs: it lives in /run, not under CLUSTER_DIR.
BERTH_STATE=${CLUSTER_BERTH_STATE:-/run/berth-cluster}
BERTH_ROOT=$CLUSTER_DIR/berth
BERTH_SOCK=$BERTH_STATE/berth.sock
NODE_NAME=${CLUSTER_NODE_NAME:-berth-node}
POD_CIDR=${CLUSTER_POD_CIDR:-10.250.0.0/16}
SERVICE_CIDR=${CLUSTER_SERVICE_CIDR:-10.251.0.0/24}
KUBE_SVC_IP=${SERVICE_CIDR%.*/*}.1
API_PORT=${CLUSTER_API_PORT:-6443}
# Cluster DNS: CoreDNS runs on the node like the control plane, on DNS_PORT of the node address;
# the kube-dns Service (DNS_IP:53) has a hand-made EndpointSlice pointing there.
DNS_IP=${SERVICE_CIDR%.*/*}.10
DNS_PORT=1053
# The agent's own pod bridge; berth0 belongs to the node's default agent.
BRIDGE=bcluster0
# The kubelet's cgroup root: its kubepods tree lives under it rather than at /kubepods, where a
# standalone kubelet of the e2e tests would share it.
CGROUP_ROOT=/berth-cluster
# The kubelet writes these whatever its root dir; down removes what `up` added.
DEVICE_PLUGINS=/var/lib/kubelet/device-plugins
CONTAINER_LOGS=/var/log/containers
# kube-proxy's and the kubelet's chains are all KUBE-*; the snapshot tells ours from any before.
IPT_TABLES=(filter nat mangle raw)
# The kubelet sets these at start (protectKernelDefaults=false); down puts the old values back.
SYSCTLS=(vm.overcommit_memory vm.panic_on_oom kernel.panic kernel.panic_on_oops kernel.keys.root_maxkeys kernel.keys.root_maxbytes)
# Every process `up` starts, in start order (down stops them controllers first).
PROCS=(registry berth containerd etcd kube-apiserver kube-controller-manager kube-scheduler coredns kubelet kube-proxy)
# shellcheck source=hack/cluster/containerd.sh
source "$REPO/hack/cluster/containerd.sh"
# metrics-server (ms_*; it appends itself to PROCS).
# shellcheck source=hack/cluster/metrics-server.sh
source "$REPO/hack/cluster/metrics-server.sh"

host_ip() {
	ip -4 route get 1.1.1.1 2>/dev/null | sed -n 's/.* src \([0-9.]*\).*/\1/p'
}

pid_of() { # name: the recorded pid if that process still runs the recorded binary
	local f=$PIDS/$1.pid pid exe
	[[ -f $f ]] || return 1
	read -r pid exe <"$f"
	# A pid alone could have been reused by another process since: check what it runs.
	[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$exe" ]] || return 1
	echo "$pid"
}

# start_bg name cmd...: a daemon in its own session (it outlives this script), its log in
# LOGS and its pid in PIDS.
start_bg() {
	local name=$1
	shift
	local exe i
	exe=$(readlink -f "$1")
	setsid "$@" >"$LOGS/$name.log" 2>&1 </dev/null &
	echo "$! $exe" >"$PIDS/$name.pid"
	# Until setsid has exec'd the binary, the pid does not run it yet.
	for ((i = 0; i < 50; i++)); do
		[[ $(readlink "/proc/$!/exe" 2>/dev/null) == "$exe" ]] && return 0
		sleep 0.1
	done
	tail -20 "$LOGS/$name.log" >&2
	die "$name did not start"
}

# wait_for desc seconds name cmd...: retries cmd until it succeeds; fails early when the
# named process has exited, with its log's tail.
wait_for() {
	local desc=$1 secs=$2 name=$3 i
	shift 3
	for ((i = 0; i < secs * 4; i++)); do
		"$@" >/dev/null 2>&1 && return 0
		if [[ -n $name ]] && ! pid_of "$name" >/dev/null; then
			tail -30 "$LOGS/$name.log" >&2
			die "$name exited before $desc"
		fi
		sleep 0.25
	done
	[[ -n $name ]] && tail -30 "$LOGS/$name.log" >&2
	die "timed out after ${secs}s waiting for $desc"
}

# --- certificates --------------------------------------------------------------------------

# cert name cn org [san]: a key and a certificate signed by the cluster CA. Clients get
# clientAuth, a name with SANs serverAuth too.
cert() {
	local name=$1 cn=$2 org=$3 san=${4:-} subj ext
	subj="/CN=$cn"
	[[ -n $org ]] && subj="/O=$org$subj"
	ext="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth${san:+,serverAuth}"
	[[ -n $san ]] && ext+="
subjectAltName=$san"
	openssl genrsa -out "$PKI/$name.key" 2048 2>/dev/null
	openssl req -new -key "$PKI/$name.key" -subj "$subj" -out "$PKI/$name.csr"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/ca.crt" -CAkey "$PKI/ca.key" -CAcreateserial \
		-days 365 -sha256 -extfile <(echo "$ext") -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr"
}

make_pki() {
	local ip=$1 gw=""
	# Extra nodes reach the API server at their bridge's gateway.
	[[ $(nodes_count) -gt 1 ]] && gw=",IP:$NODE_GW"
	mkdir -p "$PKI"
	openssl genrsa -out "$PKI/ca.key" 2048 2>/dev/null
	openssl req -x509 -new -key "$PKI/ca.key" -subj "/CN=berth-cluster-ca" -days 365 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$PKI/ca.crt"
	cert apiserver kube-apiserver "" \
		"IP:127.0.0.1,IP:$ip$gw,IP:$KUBE_SVC_IP,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	cert apiserver-kubelet-client kube-apiserver-kubelet-client system:masters
	cert admin admin system:masters
	cert controller-manager system:kube-controller-manager ""
	cert scheduler system:kube-scheduler ""
	cert kube-proxy system:kube-proxy ""
	cert coredns system:coredns ""
	cert kubelet "system:node:$NODE_NAME" system:nodes
	# The kubelet's serving certificate, so that the API server verifies whom it streams to.
	cert kubelet-serving "system:node:$NODE_NAME" system:nodes "IP:127.0.0.1,IP:$ip,DNS:$NODE_NAME"
	openssl genrsa -out "$PKI/sa.key" 2048 2>/dev/null
	openssl rsa -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub" 2>/dev/null
	chmod 0600 "$PKI"/*.key
}

# kubeconfig name cert [server]: a kubeconfig for the client certificate cert.
kubeconfig() {
	local name=$1 crt=$2 server=${3:-https://127.0.0.1:$API_PORT} kc=$CLUSTER_DIR/$1.kubeconfig
	"$BIN/kubectl" config set-cluster berth --certificate-authority="$PKI/ca.crt" --embed-certs \
		--server="$server" --kubeconfig="$kc" >/dev/null
	"$BIN/kubectl" config set-credentials "$name" --client-certificate="$PKI/$crt.crt" \
		--client-key="$PKI/$crt.key" --embed-certs --kubeconfig="$kc" >/dev/null
	"$BIN/kubectl" config set-context default --cluster=berth --user="$name" --kubeconfig="$kc" >/dev/null
	"$BIN/kubectl" config use-context default --kubeconfig="$kc" >/dev/null
}

# --- node snapshot -------------------------------------------------------------------------

# snapshot records what the node has before `up`, so that `down` removes only what the
# cluster added: KUBE-* chains, sysctl values, directories the kubelet creates outside its root.
snapshot() {
	local dir=$CLUSTER_DIR/before cmd table s d
	mkdir -p "$dir"
	for cmd in iptables ip6tables; do
		for table in "${IPT_TABLES[@]}"; do
			kube_chains "$cmd" "$table" >"$dir/$cmd-$table"
		done
	done
	for s in "${SYSCTLS[@]}"; do
		echo "$s $(sysctl -n "$s" 2>/dev/null)"
	done >"$dir/sysctls"
	# /var/log/pods: the node containers mount over it (hack/cluster-nodes.sh).
	for d in /var/lib/kubelet "$DEVICE_PLUGINS" "$CONTAINER_LOGS" /var/log/pods; do
		[[ -e $d ]] || echo "$d"
	done >"$dir/absent"
}

kube_chains() { # cmd table: the KUBE-* chains of one table
	"$1-save" -t "$2" 2>/dev/null | sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' | sort -u
}

# clean_iptables removes the KUBE-* chains `up` found absent, and the rules elsewhere that
# jump to them (kube-proxy hooks KUBE-SERVICES and friends into the built-in chains).
clean_iptables() {
	local cmd table chain rule new
	for cmd in iptables ip6tables; do
		for table in "${IPT_TABLES[@]}"; do
			new=$(comm -13 "$CLUSTER_DIR/before/$cmd-$table" <(kube_chains "$cmd" "$table"))
			[[ -n $new ]] || continue
			while read -r rule; do
				# iptables-save quotes comments the way a shell does.
				eval "$cmd -t $table -D ${rule#-A }" || log "cannot delete $cmd rule: $rule"
			done < <("$cmd-save" -t "$table" | grep -E '^-A ' | grep -E -- "-j ($(paste -sd'|' <<<"$new"))( |\$)" |
				grep -vE "^-A ($(paste -sd'|' <<<"$new")) ")
			for chain in $new; do "$cmd" -t "$table" -F "$chain"; done
			for chain in $new; do "$cmd" -t "$table" -X "$chain" || log "cannot delete $cmd chain $table/$chain"; done
		done
	done
}

# Traffic to a Service address that kube-proxy did not rewrite (a port the Service lacks, a
# Service since deleted) would take the default route off the machine, where whatever answers
# (this machine's egress answers any port 80) would stand in for "nothing serves this". On a
# cluster network such an address leads nowhere; service_guard refuses it instead, in the
# filter table after kube-proxy's DNAT: a packet it rewrote carries conntrack's DNAT state
# and passes. The host's rules go at down (service_unguard); a node container's with its netns.
SVC_IPT_TAG=berth-cluster-services
service_guard() { # [nsenter -t PID -n]: in that netns, else the host's
	local chain
	for chain in OUTPUT FORWARD; do
		"$@" iptables -I "$chain" -d "$SERVICE_CIDR" -m conntrack ! --ctstate DNAT \
			-m comment --comment "$SVC_IPT_TAG" -j REJECT
	done
}

service_unguard() { delete_tagged_rules "$SVC_IPT_TAG" filter; }

# delete_tagged_rules tag table...: the host's iptables rules carrying comment tag, in those tables.
delete_tagged_rules() {
	local tag=$1 table rule
	shift
	for table in "$@"; do
		while read -r rule; do
			eval "iptables -t $table -D ${rule#-A }" || log "cannot delete iptables rule: $rule"
		done < <(iptables-save -t "$table" | grep -E '^-A ' | grep -F -- "--comment $tag ")
	done
}

restore_node() {
	local dir=$CLUSTER_DIR/before s v d
	[[ -d $dir ]] || return 0
	service_unguard
	clean_iptables
	while read -r s v; do
		[[ -n $v && $(sysctl -n "$s" 2>/dev/null) != "$v" ]] && sysctl -qw "$s=$v"
	done <"$dir/sysctls"
	# The kubelet links container logs into /var/log/containers; ours point into CLUSTER_DIR.
	find "$CONTAINER_LOGS" -maxdepth 1 -type l -lname "$CLUSTER_DIR/*" -delete 2>/dev/null
	rm -f "$DEVICE_PLUGINS/kubelet.sock"
	# Deepest first: the directories the kubelet created, if it left them empty.
	while read -r d; do
		[[ -d $d ]] && rmdir "$d" 2>/dev/null
	done < <(sort -r "$dir/absent")
	true
}

# --- start ---------------------------------------------------------------------------------

start_registry() {
	mkdir -p "$CLUSTER_DIR/bin"
	(cd "$REPO" && "$GO" build -o "$CLUSTER_DIR/bin/images" ./hack/critest/images)
	# CLUSTER_AGNHOST (hack/conformance.sh): an agnhost binary; the registry then serves
	# e2e.test's images too, the etcd image with the cluster's own etcd.
	start_bg registry "$CLUSTER_DIR/bin/images" --addr 127.0.0.1:0 --certs-dir "$CLUSTER_DIR/certs.d" \
		--manifest "$CLUSTER_DIR/images.json" ${CLUSTER_AGNHOST:+--agnhost "$CLUSTER_AGNHOST" --etcd "$BIN/etcd"}
	wait_for "the image registry" 120 registry grep -q '^serving on ' "$LOGS/registry.log"
}

start_berth() {
	mkdir -p "$BERTH_ROOT" "$BERTH_STATE" "$CLUSTER_DIR/net.d"
	# An empty CNI dir: berth's default bridge network, on a bridge and subnet of its own;
	# the kubelet's pod CIDR (from the Node) replaces the subnet.
	cat >"$CLUSTER_DIR/berth.toml" <<EOT
root = "$BERTH_ROOT"
state = "$BERTH_STATE"
listen = "$BERTH_SOCK"
shim_binary = "$BERTH_SHIM_BIN"

[images]
certs_dir = "$CLUSTER_DIR/certs.d"

[nri]
socket_path = "$BERTH_STATE/nri.sock"

[network]
cni_conf_dir = "$CLUSTER_DIR/net.d"
default_bridge = "$BRIDGE"
default_subnet = "${POD_CIDR%.*.*/*}.0.0/24"
EOT
	start_bg berth "$BERTH_BIN" --config "$CLUSTER_DIR/berth.toml"
	wait_for "berth on $BERTH_SOCK" 60 berth crictl --runtime-endpoint "unix://$BERTH_SOCK" --timeout 2s version
}

start_etcd() {
	# --unsafe-no-fsync: a throw-away test cluster on a shared, loaded disk; losing etcd's
	# data on a crash loses nothing of value, and fsync stalls would slow every write.
	start_bg etcd "$BIN/etcd" --name berth --data-dir "$CLUSTER_DIR/etcd" \
		--listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
		--listen-peer-urls http://127.0.0.1:2380 --initial-advertise-peer-urls http://127.0.0.1:2380 \
		--initial-cluster berth=http://127.0.0.1:2380 --unsafe-no-fsync
	wait_for "etcd" 60 etcd curl -fsS http://127.0.0.1:2379/health
}

start_apiserver() {
	local ip=$1
	local agg
	mapfile -t agg < <(ms_apiserver_flags)
	start_bg kube-apiserver "$BIN/kube-apiserver" "${agg[@]}" \
		--etcd-servers=http://127.0.0.1:2379 \
		--secure-port="$API_PORT" --advertise-address="$ip" --cert-dir="$CLUSTER_DIR/apiserver" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--authorization-mode=Node,RBAC --allow-privileged=true \
		--kubelet-client-certificate="$PKI/apiserver-kubelet-client.crt" \
		--kubelet-client-key="$PKI/apiserver-kubelet-client.key" \
		--kubelet-certificate-authority="$PKI/ca.crt" \
		--kubelet-preferred-address-types=InternalIP
	wait_for "the API server" 120 kube-apiserver "$BIN/kubectl" --kubeconfig "$KCFG" get --raw /readyz
}

start_controllers() {
	start_bg kube-controller-manager "$BIN/kube-controller-manager" \
		--kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
		--authentication-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
		--authorization-kubeconfig="$CLUSTER_DIR/controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false --cert-dir="$CLUSTER_DIR/controller-manager" \
		--allocate-node-cidrs --cluster-cidr="$POD_CIDR" --node-cidr-mask-size=24 \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
		--use-service-account-credentials
	start_bg kube-scheduler "$BIN/kube-scheduler" \
		--kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
		--authentication-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
		--authorization-kubeconfig="$CLUSTER_DIR/scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --leader-elect=false
}

# start_kubelet: the 1.37 defaults except what this node needs: failCgroupV1=false (the host
# is cgroup v1, which 1.35+ refuses by default), the cgroupfs driver (this host has no
# systemd as PID 1 for berth's systemd driver to talk to), and its own cgroup root, pod log
# dir and root dir.
start_kubelet() {
	local ip=$1
	mkdir -p "$CLUSTER_DIR/kubelet" "$CLUSTER_DIR/pod-logs"
	cgroup_root "$CGROUP_ROOT"
	kubelet_config "$RUNTIME_SOCK" "$CGROUP_ROOT" "$CLUSTER_DIR/pod-logs" kubelet-serving >"$CLUSTER_DIR/kubelet.yaml"
	start_bg kubelet "$BIN/kubelet" --config="$CLUSTER_DIR/kubelet.yaml" \
		--kubeconfig="$CLUSTER_DIR/kubelet.kubeconfig" --hostname-override="$NODE_NAME" --node-ip="$ip" \
		--root-dir="$CLUSTER_DIR/kubelet" --cert-dir="$CLUSTER_DIR/kubelet/pki" -v=2
}

# kubelet_config sock cgroup-root pod-logs-dir cert: a kubelet's configuration, for the host's
# node and the node containers alike; cert names the serving certificate's files in PKI.
kubelet_config() {
	cat <<EOT
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
containerRuntimeEndpoint: unix://$1
cgroupDriver: cgroupfs
failCgroupV1: false
cgroupRoot: $2
podLogsDir: $3
tlsCertFile: $PKI/$4.crt
tlsPrivateKeyFile: $PKI/$4.key
authentication:
  anonymous: {enabled: false}
  webhook: {enabled: true}
  x509: {clientCAFile: $PKI/ca.crt}
authorization: {mode: Webhook}
clusterDomain: cluster.local
clusterDNS: [$DNS_IP]
EOT
}

# cgroup_root root: a kubelet's cgroup root, in every hierarchy (the kubelet wants it in
# each, the named systemd one included).
cgroup_root() {
	local root=$1 c cs=/sys/fs/cgroup/cpuset
	for c in /sys/fs/cgroup/*/; do
		mkdir -p "$c${root#/}"
	done
	# A v1 cpuset is empty when made by mkdir: give it the root's CPUs and memory nodes.
	if [[ -d $cs$root ]]; then
		cat "$cs/cpuset.cpus" >"$cs$root/cpuset.cpus"
		cat "$cs/cpuset.mems" >"$cs$root/cpuset.mems"
	fi
}

# start_proxy: iptables mode; it leaves the node's conntrack limits and timeouts and
# route_localnet as they are (zeros and localhostNodePorts=false), so down has nothing to undo there.
start_proxy() {
	cat >"$CLUSTER_DIR/kube-proxy.yaml" <<EOT
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: {kubeconfig: $CLUSTER_DIR/kube-proxy.kubeconfig}
mode: iptables
clusterCIDR: $POD_CIDR
hostnameOverride: $NODE_NAME
metricsBindAddress: 127.0.0.1:10249
healthzBindAddress: 127.0.0.1:10256
conntrack: {maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s}
iptables: {localhostNodePorts: false}
EOT
	start_bg kube-proxy "$BIN/kube-proxy" --config="$CLUSTER_DIR/kube-proxy.yaml"
	wait_for "kube-proxy" 60 kube-proxy curl -fsS http://127.0.0.1:10256/healthz
}

# start_dns runs CoreDNS (kubeadm's Corefile) on the node address and publishes it as the
# kube-dns Service, whose EndpointSlice is written here since no pod backs it.
start_dns() {
	local ip=$1
	cat >"$CLUSTER_DIR/Corefile" <<EOT
.:$DNS_PORT {
    bind $ip
    errors
    ready 127.0.0.1:8181
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $CLUSTER_DIR/coredns.kubeconfig default
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    forward . /etc/resolv.conf
    cache 30
    loop
    loadbalance
}
EOT
	"$BIN/kubectl" --kubeconfig "$KCFG" apply -f - >/dev/null <<EOT
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "system:coredns"}
---
apiVersion: v1
kind: Service
metadata:
  name: kube-dns
  namespace: kube-system
  labels: {k8s-app: kube-dns}
spec:
  clusterIP: $DNS_IP
  ports:
  - {name: dns, port: 53, protocol: UDP, targetPort: $DNS_PORT}
  - {name: dns-tcp, port: 53, protocol: TCP, targetPort: $DNS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: kube-dns-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: kube-dns, endpointslice.kubernetes.io/managed-by: berth-cluster}
addressType: IPv4
endpoints:
- addresses: [$ip]
  conditions: {ready: true}
ports:
- {name: dns, port: $DNS_PORT, protocol: UDP}
- {name: dns-tcp, port: $DNS_PORT, protocol: TCP}
EOT
	start_bg coredns "$(dns_dir)/coredns" -conf "$CLUSTER_DIR/Corefile"
	wait_for "CoreDNS" 60 coredns curl -fsS http://127.0.0.1:8181/ready
}

node_ready() { # [name]: the host's node by default
	[[ $("$BIN/kubectl" --kubeconfig "$KCFG" get node "${1:-$NODE_NAME}" \
		-o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

preflight() {
	[[ $(id -u) == 0 ]] || die "run as root"
	local p
	for p in "${PROCS[@]}"; do
		pid_of "$p" >/dev/null && die "$p already runs (pid $(pid_of "$p")); hack/cluster.sh down first"
	done
	[[ ! -e $CLUSTER_DIR && ! -e $BERTH_STATE ]] ||
		die "$CLUSTER_DIR or $BERTH_STATE exists: a previous cluster was not taken down (hack/cluster.sh down)"
	for p in 2379 2380 "$API_PORT" 10248 10249 10250 10256 10257 10259 8181 9153 "$DNS_PORT"; do
		ss -Hltun "sport = :$p" | grep -q . && die "port $p is taken"
	done
	ip link show "$BRIDGE" >/dev/null 2>&1 && die "bridge $BRIDGE exists"
	if ((NODES > 1)); then
		ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && die "bridge $NODE_BRIDGE exists"
		ip -4 route | grep -q "^$NODE_NET\." && die "a route to $NODE_NET.0/24 exists"
		for p in $(seq 2 "$NODES"); do
			[[ -e $(node_state "$p") ]] && die "$(node_state "$p") exists: hack/cluster.sh down first"
			ip link show "vnode$p" >/dev/null 2>&1 && die "link vnode$p exists (a node of an earlier cluster?)"
		done
	fi
	command -v crictl >/dev/null || die "crictl not found (hack/deps.sh)"
	runtime_preflight
	ms_preflight
	if [[ $RUNTIME == berth && ( ! -x $BERTH_BIN || ! -x $BERTH_SHIM_BIN ) ]]; then
		log "building berth (make build)"
		make -C "$REPO" build >&2
	fi
}

up() {
	local start=$SECONDS ip
	NODES=1
	while (($#)); do
		case $1 in
		--nodes) NODES=${2:-}; shift 2 || die "--nodes N" ;;
		--nodes=*) NODES=${1#*=}; shift ;;
		--runtime) runtime_select "${2:?--runtime needs berth or containerd}"; shift 2 ;;
		--runtime=*) runtime_select "${1#*=}"; shift ;;
		*) die "up: unknown argument $1" ;;
		esac
	done
	[[ $NODES =~ ^[1-9][0-9]*$ ]] && ((NODES <= 20)) || die "--nodes $NODES: want 1..20"
	build
	BIN=$(bin_dir)
	preflight
	ip=$(host_ip)
	[[ -n $ip ]] || die "cannot tell the node's address"
	mkdir -p "$LOGS" "$PIDS"
	echo "$BIN" >"$CLUSTER_DIR/bin-dir"
	echo "$NODES" >"$CLUSTER_DIR/nodes-count"
	snapshot
	runtime_snapshot
	log "certificates in $PKI (node $NODE_NAME, $ip)"
	make_pki "$ip"
	ms_pki "$ip"
	kubeconfig admin admin
	mv "$CLUSTER_DIR/admin.kubeconfig" "$KCFG"
	kubeconfig controller-manager controller-manager
	kubeconfig scheduler scheduler
	kubeconfig kube-proxy kube-proxy
	kubeconfig coredns coredns
	kubeconfig "system:node:$NODE_NAME" kubelet
	mv "$CLUSTER_DIR/system:node:$NODE_NAME.kubeconfig" "$CLUSTER_DIR/kubelet.kubeconfig"
	nodes_pki
	log "starting the image registry and $RUNTIME"
	start_registry
	start_runtime
	log "starting etcd and the control plane"
	start_etcd
	start_apiserver "$ip"
	start_controllers
	start_dns "$ip"
	ms_start "$ip"
	log "starting the kubelet and kube-proxy"
	start_kubelet "$ip"
	wait_for "node $NODE_NAME registered" 120 kubelet "$BIN/kubectl" --kubeconfig "$KCFG" get node "$NODE_NAME"
	service_guard
	start_proxy
	wait_for "node $NODE_NAME Ready" 180 kubelet node_ready
	nodes_up
	# Pods are admitted only once the namespace's default ServiceAccount exists.
	wait_for "the default ServiceAccount" 60 kube-controller-manager "$BIN/kubectl" --kubeconfig "$KCFG" get serviceaccount default
	log "up in $((SECONDS - start))s; logs in $LOGS"
	"$BIN/kubectl" --kubeconfig "$KCFG" get nodes -o wide >&2
	echo "KUBECONFIG=$KCFG"
}

# --- stop ----------------------------------------------------------------------------------

stop_procs() { # names...: SIGTERM to each, then wait for all; SIGKILL whatever runs after 30s
	local name pid i alive pids=()
	for name in "$@"; do
		pid=$(pid_of "$name") || continue
		kill -TERM "$pid" 2>/dev/null
		pids+=("$pid")
	done
	for ((i = 0; i < 300; i++)); do
		alive=false
		for pid in "${pids[@]}"; do
			kill -0 "$pid" 2>/dev/null && alive=true
		done
		$alive || return 0
		sleep 0.1
	done
	for name in "$@"; do
		pid=$(pid_of "$name") || continue
		log "$name ($pid) ignored SIGTERM for 30s, killing it"
		kill -KILL "$pid" 2>/dev/null
	done
}

crictl_at() { # sock args...
	local sock=$1
	shift
	crictl --runtime-endpoint "unix://$sock" --image-endpoint "unix://$sock" --timeout 60s "$@"
}
crictl_ours() { crictl_at "$RUNTIME_SOCK" "$@"; }

# remove_pods removes every pod through the runtime, the way a node is drained, once the kubelet
# is gone (it would recreate them). The ids tell the leak check what to look for.
remove_pods() {
	pid_of "$RUNTIME" >/dev/null || return 0
	{ crictl_ours pods -q; crictl_ours ps -aq; } 2>/dev/null >>"$CLUSTER_DIR/ids"
	crictl_ours rmp -fa >>"$LOGS/down.log" 2>&1 || log "crictl rmp -fa failed (see $LOGS/down.log)"
}

# kill_leftovers kills what still names our directories (shims outlive the agent by design).
kill_leftovers() {
	local p
	for p in $(grep -lsF -e "$BERTH_STATE" -e "$CLUSTER_DIR/" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		[[ $p == "$$" || $p == "$BASHPID" ]] && continue
		grep -qsF -e "$BERTH_STATE" -e "$CLUSTER_DIR/" "/proc/$p/cmdline" || continue # the grep above, gone
		log "killing leftover $(tr '\0' ' ' </proc/"$p"/cmdline 2>/dev/null) ($p)"
		kill -KILL "$p" 2>/dev/null
	done
}

unmount_under() { # dir: everything mounted below dir, deepest first
	grep -F " $1" /proc/self/mountinfo | awk '{ print $5 }' | grep -E "^$1(/|\$)" | sort -r | while read -r m; do
		umount -l "$m" || log "cannot unmount $m"
	done
}

# remove_cgroups root: kills what is left in a kubelet's cgroup tree and removes it, deepest first.
remove_cgroups() {
	local dirs d i busy
	dirs=$(find /sys/fs/cgroup/*"$1" -depth -type d 2>/dev/null)
	[[ -n $dirs ]] || return 0
	for d in $dirs; do xargs -r kill -KILL <"$d/cgroup.procs" 2>/dev/null; done
	for ((i = 0; i < 50; i++)); do
		busy=false
		for d in $dirs; do [[ -s $d/cgroup.procs ]] && busy=true; done
		$busy || break
		sleep 0.1
	done
	for d in $dirs; do rmdir "$d" || log "cannot remove cgroup $d"; done
}

down() {
	[[ -d $CLUSTER_DIR || -d $BERTH_STATE ]] || { log "no cluster in $CLUSTER_DIR"; return 0; }
	mkdir -p "$LOGS" "$PIDS"
	runtime_load
	# Best effort from here: one step failing must not keep the others from cleaning up.
	set +e
	local rc=0
	# Controllers first, so that nothing recreates what the rest of the teardown removes; the
	# kubelet before the pods are removed, since it would restart them.
	stop_procs metrics-server
	stop_procs kube-proxy kube-scheduler kube-controller-manager coredns
	nodes_down
	stop_procs kubelet
	remove_pods
	stop_procs berth containerd
	# The API server before etcd: without etcd its graceful shutdown hangs.
	stop_procs kube-apiserver registry
	stop_procs etcd
	kill_leftovers
	unmount_under "$CLUSTER_DIR"
	unmount_under "$BERTH_STATE"
	remove_cgroups "$CGROUP_ROOT"
	restore_node
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	nodes_gone || rc=1
	sort -u "$CLUSTER_DIR/ids" -o "$CLUSTER_DIR/ids" 2>/dev/null || touch "$CLUSTER_DIR/ids"
	if ! "$REPO/hack/check-leaks.sh" --state "$BERTH_STATE" --root "$RUNTIME_ROOT" --bridge "$BRIDGE" \
		--subnet "$POD_CIDR" --ids "$CLUSTER_DIR/ids"; then
		rc=1
	fi
	if [[ -n ${CLUSTER_KEEP_LOGS:-} ]]; then
		mkdir -p "$CLUSTER_KEEP_LOGS" && cp -r "$LOGS/." "$CLUSTER_KEEP_LOGS/"
	fi
	rm -rf "$CLUSTER_DIR" "$BERTH_STATE"
	((rc == 0)) && log "down: nothing left" || log "down: leaks above"
	return "$rc"
}

status() {
	local p pid running=0
	runtime_load
	for p in "${PROCS[@]}"; do
		if pid=$(pid_of "$p"); then
			printf '%-24s running (pid %s)\n' "$p" "$pid"
			running=$((running + 1))
		else
			printf '%-24s stopped\n' "$p"
		fi
	done
	if pid_of kube-apiserver >/dev/null; then
		nodes_status
		"$(<"$CLUSTER_DIR/bin-dir")/kubectl" --kubeconfig "$KCFG" get nodes -o wide 2>&1 || true
		echo "KUBECONFIG=$KCFG"
	fi
	((running > 0))
}

# built prints the cache directory when every component is built, else fails.
built() {
	local dir
	dir=$(bin_dir)
	[[ -f $dir/.complete && -x $(dns_dir)/coredns ]] || die "the components are not built (hack/cluster.sh build)"
	ms_built || die "metrics-server is not built (hack/cluster.sh build)"
	echo "$dir"
}

# shellcheck source=hack/cluster-nodes.sh
source "$REPO/hack/cluster-nodes.sh"

case ${1:-} in
build) build ;;
built) built ;;
up) shift; up "$@" ;;
down) down ;;
status) status ;;
node) shift; node_ctl "$@" ;;
node-init) node_init "$2" ;; # inside a node's namespaces (hack/cluster-nodes.sh)
*) die "usage: cluster.sh build|built|up [--nodes N] [--runtime berth|containerd]|down|status|node N start|stop|kill DAEMON" ;;
esac
