// Package network wires pods into networks: netns/ creates and pins a pod's namespaces, cni/
// attaches a pinned network namespace to the pod network through the CNI plugins.
//
// The CRI layer declares the small interface it consumes (Setup, Teardown, Status, GC,
// SetPodCIDR) and uses *cni.Manager as its concrete implementation; nothing here knows about
// CRI protobufs. Only cni/ imports libcni, so a libcni upgrade touches one package.
package network
