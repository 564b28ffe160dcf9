// Command coredns is CoreDNS with the plugins a cluster's DNS needs (the upstream
// Corefile of kubeadm), built by hack/cluster.sh. It lives in a module of its own so that
// CoreDNS's dependencies (quic-go, its client-go) do not move the versions the Kubernetes
// components are built with in hack/kubelet.
package main

import (
	"github.com/coredns/coredns/core/dnsserver"
	"github.com/coredns/coredns/coremain"

	// The plugins of kubeadm's default Corefile; upstream's core/plugin imports every one.
	_ "github.com/coredns/coredns/plugin/bind"
	_ "github.com/coredns/coredns/plugin/cache"
	_ "github.com/coredns/coredns/plugin/errors"
	_ "github.com/coredns/coredns/plugin/forward"
	_ "github.com/coredns/coredns/plugin/health"
	_ "github.com/coredns/coredns/plugin/kubernetes"
	_ "github.com/coredns/coredns/plugin/loadbalance"
	_ "github.com/coredns/coredns/plugin/log"
	_ "github.com/coredns/coredns/plugin/loop"
	_ "github.com/coredns/coredns/plugin/metrics"
	_ "github.com/coredns/coredns/plugin/ready"
	_ "github.com/coredns/coredns/plugin/reload"
)

// The blank dnsserver import registers the server type; naming it keeps goimports from
// dropping it when the plugin list changes.
var _ = dnsserver.Directives

func main() { coremain.Run() }
