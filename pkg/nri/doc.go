// Package nri connects berth to NRI plugins (github.com/containerd/nri): it relays pod and
// container lifecycle events to them and applies their container adjustments to OCI specs.
package nri
