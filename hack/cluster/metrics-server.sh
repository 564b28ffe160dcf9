# shellcheck shell=bash
# metrics-server for hack/cluster.sh (sourced by it): built from its own wrapper module
# (hack/metrics-server), run on the node as a host process like CoreDNS, and published to the
# API server's aggregation layer as v1beta1.metrics.k8s.io through a Service whose hand-made
# EndpointSlice points at the node's address. `kubectl top` reads it.
#
# Uses cluster.sh's REPO, GO, K8S_BIN_CACHE, CLUSTER_DIR, PKI, LOGS, KCFG, BIN and its helpers
# (log, die, cert, kubeconfig, start_bg, wait_for).

MS_MOD=$REPO/hack/metrics-server
# metrics-server serves on the node's address (the API server reaches it through the
# Service's endpoint, which must be a routable address, not 127.0.0.1).
MS_PORT=${CLUSTER_METRICS_PORT:-10300}
# The identity metrics-server authenticates to the API server with (its client certificate).
MS_USER=system:metrics-server
# The API server's front-proxy client: what it presents to aggregated API servers, and the
# name they must see in --requestheader-allowed-names.
MS_PROXY_CN=front-proxy-client

ms_version() { sed -n 's|.*sigs.k8s.io/metrics-server \(v[^ ]*\).*|\1|p' "$MS_MOD/go.mod" | head -1; }

# ms_dir is metrics-server's cache directory, keyed by its own module (hack/metrics-server).
ms_dir() {
	local sum
	sum=$(cat "$MS_MOD/go.mod" "$MS_MOD/go.sum" "$MS_MOD/main.go" | sha256sum | cut -c1-12)
	echo "$K8S_BIN_CACHE/metrics-server-$(ms_version)-$sum"
}

# ms_build builds metrics-server in one `go build`, unless the cache has it.
ms_build() {
	local dir start=$SECONDS
	dir=$(ms_dir)
	[[ -x $dir/metrics-server ]] && return 0
	mkdir -p "$dir"
	log "building metrics-server into $dir"
	# Upstream's Makefile: no cgo, -trimpath, its version stamped into client-go's.
	(cd "$MS_MOD" && CGO_ENABLED=0 "$GO" build -mod=readonly -buildvcs=false -trimpath \
		-ldflags "-s -w -X k8s.io/client-go/pkg/version.gitVersion=$(ms_version)" \
		-o "$dir/metrics-server.tmp" .)
	mv "$dir/metrics-server.tmp" "$dir/metrics-server"
	log "built metrics-server in $((SECONDS - start))s"
}

ms_built() { [[ -x $(ms_dir)/metrics-server ]]; }

ms_preflight() {
	ss -Hltn "sport = :$MS_PORT" | grep -q . && die "port $MS_PORT (metrics-server) is taken"
	true
}

# ms_pki makes metrics-server's certificates: its client certificate (whom the API server and
# the kubelets see), its serving certificate (the name the aggregator verifies is the
# Service's, metrics-server.kube-system.svc; the IP is for the readiness probe), and the
# front proxy's: a CA of its own, as kubeadm does, so that no client certificate of the
# cluster CA can pass for the API server's proxy and assert a user in request headers.
ms_pki() {
	local ip=$1
	cert metrics-server "$MS_USER" ""
	cert metrics-server-serving metrics-server "" \
		"IP:$ip,DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system.svc.cluster.local"
	openssl genrsa -out "$PKI/front-proxy-ca.key" 2048 2>/dev/null
	openssl req -x509 -new -key "$PKI/front-proxy-ca.key" -subj "/CN=berth-cluster-front-proxy-ca" -days 365 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$PKI/front-proxy-ca.crt"
	openssl genrsa -out "$PKI/front-proxy-client.key" 2048 2>/dev/null
	openssl req -new -key "$PKI/front-proxy-client.key" -subj "/CN=$MS_PROXY_CN" -out "$PKI/front-proxy-client.csr"
	openssl x509 -req -in "$PKI/front-proxy-client.csr" -CA "$PKI/front-proxy-ca.crt" -CAkey "$PKI/front-proxy-ca.key" \
		-CAcreateserial -days 365 -sha256 -out "$PKI/front-proxy-client.crt" 2>/dev/null \
		-extfile <(printf '%s\n' "basicConstraints=critical,CA:FALSE" \
			"keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=clientAuth")
	rm -f "$PKI/front-proxy-client.csr"
	chmod 0600 "$PKI"/*.key
	kubeconfig metrics-server metrics-server
}

# ms_apiserver_flags prints, one a line, the aggregation layer's flags for kube-apiserver: the
# front proxy's CA and certificate and the headers it passes the user in. Aggregator routing:
# the API server dials the Service's endpoint (the node's address) rather than its ClusterIP,
# so the APIService works before kube-proxy has written its rules, and without them.
ms_apiserver_flags() {
	printf '%s\n' \
		--requestheader-client-ca-file="$PKI/front-proxy-ca.crt" \
		--requestheader-allowed-names="$MS_PROXY_CN" \
		--requestheader-username-headers=X-Remote-User \
		--requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$PKI/front-proxy-client.crt" \
		--proxy-client-key-file="$PKI/front-proxy-client.key" \
		--enable-aggregator-routing=true
}

# ms_objects applies what publishes metrics-server: upstream's RBAC (components.yaml of
# v0.8.0) for the user of its client certificate, the Service with a hand-made EndpointSlice
# (no pod backs it: the node's address, as for kube-dns) and the APIService, whose caBundle is
# the cluster CA that signed the serving certificate.
ms_objects() {
	local ip=$1
	"$BIN/kubectl" --kubeconfig "$KCFG" apply -f - >/dev/null <<EOT
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:metrics-server"}
rules:
- apiGroups: [""]
  resources: [nodes/metrics]
  verbs: [get]
- apiGroups: [""]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: "system:aggregated-metrics-reader"
  labels:
    rbac.authorization.k8s.io/aggregate-to-admin: "true"
    rbac.authorization.k8s.io/aggregate-to-edit: "true"
    rbac.authorization.k8s.io/aggregate-to-view: "true"
rules:
- apiGroups: [metrics.k8s.io]
  resources: [pods, nodes]
  verbs: [get, list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:metrics-server"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:metrics-server"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "$MS_USER"}
---
# TokenReviews and SubjectAccessReviews: metrics-server delegates authn and authz to the API server.
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "metrics-server:system:auth-delegator"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:auth-delegator"}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "$MS_USER"}
---
# The extension-apiserver-authentication ConfigMap: the client and front-proxy CAs and headers.
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: metrics-server-auth-reader, namespace: kube-system}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: extension-apiserver-authentication-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: "$MS_USER"}
---
apiVersion: v1
kind: Service
metadata:
  name: metrics-server
  namespace: kube-system
  labels: {k8s-app: metrics-server}
spec:
  ports:
  - {name: https, port: 443, protocol: TCP, targetPort: $MS_PORT}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: metrics-server-node
  namespace: kube-system
  labels: {kubernetes.io/service-name: metrics-server, endpointslice.kubernetes.io/managed-by: berth-cluster}
addressType: IPv4
endpoints:
- addresses: [$ip]
  conditions: {ready: true}
ports:
- {name: https, port: $MS_PORT, protocol: TCP}
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: v1beta1.metrics.k8s.io
  labels: {k8s-app: metrics-server}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: 443}
  caBundle: $(base64 -w0 "$PKI/ca.crt")
  groupPriorityMinimum: 100
  versionPriority: 100
EOT
}

ms_available() {
	[[ $("$BIN/kubectl" --kubeconfig "$KCFG" get apiservice v1beta1.metrics.k8s.io \
		-o jsonpath='{.status.conditions[?(@.type=="Available")].status}' 2>/dev/null) == True ]]
}

# ms_start publishes and starts metrics-server on the node's address. It reaches the kubelets
# on their InternalIP and status port over TLS, verifying their serving certificates with the
# cluster CA (no --kubelet-insecure-tls), as the user of its client certificate.
# --metric-resolution: upstream's manifest's 15s (the binary's default is 60s).
ms_start() {
	local ip=$1 kc=$CLUSTER_DIR/metrics-server.kubeconfig
	ms_objects "$ip"
	start_bg metrics-server "$(ms_dir)/metrics-server" \
		--kubeconfig="$kc" --authentication-kubeconfig="$kc" --authorization-kubeconfig="$kc" \
		--bind-address="$ip" --secure-port="$MS_PORT" --cert-dir="$CLUSTER_DIR/metrics-server" \
		--tls-cert-file="$PKI/metrics-server-serving.crt" --tls-private-key-file="$PKI/metrics-server-serving.key" \
		--kubelet-certificate-authority="$PKI/ca.crt" --kubelet-preferred-address-types=InternalIP \
		--kubelet-use-node-status-port --metric-resolution=15s
	wait_for "metrics-server" 60 metrics-server curl -fsS --cacert "$PKI/ca.crt" "https://$ip:$MS_PORT/livez"
	wait_for "the metrics.k8s.io APIService" 60 metrics-server ms_available
}

PROCS+=(metrics-server)
