# shellcheck shell=bash
# The Kubernetes version the hack/ scripts build (hack/cluster.sh, hack/conformance.sh), and
# how its binaries are stamped with it. Sourced; KUBE_VERSION may come from the environment.
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}

# version_ldflags stamps the version the way the upstream build does: component-base is what
# `--version`, the node status and e2e.test (which compares it with the server's) report;
# client-go's copy is set too.
version_ldflags() {
	local ver=${KUBE_VERSION#v} major minor pkg flags=""
	major=${ver%%.*}
	minor=${ver#*.}
	minor=${minor%%.*}
	for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
		flags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=$major -X $pkg.gitMinor=$minor"
		flags+=" -X $pkg.gitCommit=0000000000000000000000000000000000000000 -X $pkg.gitTreeState=clean"
		flags+=" -X $pkg.buildDate=1970-01-01T00:00:00Z"
	done
	echo "$flags"
}
