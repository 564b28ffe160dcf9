// Package cni attaches pod network namespaces to the pod network by running the CNI plugins
// through libcni (ADD, DEL, GC), and tracks which network config is in force.
//
// The pod network is the first valid config file in the config dir, in lexical order as the
// kubelet and containerd pick it. With no config file at all, a default bridge network is
// synthesized in memory (bridge + host-local + portmap + bandwidth), so a bare node works
// without writing anything to /etc. The dir is rescanned (a cheap stat of its files) on every
// call, so config changes apply without a restart. The kubelet's pod CIDR replaces the default
// subnet for new pods; the default bridge then carries the old gateway too for as long as pods
// hold addresses of the old range (bridge_addr.go).
//
// This is the only package that imports github.com/containernetworking/cni.
package cni
