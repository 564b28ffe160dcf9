//go:build tools

// Package kubeletbuild pins k8s.io/kubernetes/cmd/kubelet in this module's
// graph so that `go mod tidy` keeps every module the kubelet needs.
package kubeletbuild

import _ "k8s.io/kubernetes/cmd/kubelet"
