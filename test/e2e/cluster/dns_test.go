package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestClusterDNS: a pod's resolv.conf names the cluster DNS, which resolves Services
// (the kubernetes Service and one of the test's) through kube-proxy to CoreDNS.
func TestClusterDNS(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	runPod(t, ns, "web", httpd, "")
	mustKubectl(t, "-n", ns, "expose", "pod", "web", "--port=8080", "--target-port=80", "--name=web")
	webIP := mustKubectl(t, "-n", ns, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	dnsIP := mustKubectl(t, "-n", "kube-system", "get", "service", "kube-dns", "-o", "jsonpath={.spec.clusterIP}")
	apiIP := mustKubectl(t, "get", "service", "kubernetes", "-o", "jsonpath={.spec.clusterIP}")
	runPod(t, ns, "client", busybox, stopOnTerm)

	resolv := mustKubectl(t, "-n", ns, "exec", "client", "--", "cat", "/etc/resolv.conf")
	if !strings.Contains(resolv, "nameserver "+dnsIP) || !strings.Contains(resolv, ns+".svc.cluster.local") {
		t.Fatalf("pod resolv.conf does not name the cluster DNS %s and the namespace's search domain:\n%s", dnsIP, resolv)
	}
	for name, want := range map[string]string{
		"kubernetes.default.svc.cluster.local": apiIP,
		"web":                                  webIP, // through the search path
	} {
		// CoreDNS learns a new Service from its watch: poll briefly.
		waitFor(t, time.Minute, "resolving "+name, func() error {
			// busybox's nslookup tries every search domain and fails when one of them has
			// no answer (NXDOMAIN for web.svc.cluster.local): the answer found is what counts.
			out, err := kubectl(t, "-n", ns, "exec", "client", "--", "sh", "-c", "nslookup "+name+"; true")
			if err != nil {
				return err
			}
			if !strings.Contains(out, want) {
				return fmt.Errorf("nslookup %s: want %s in\n%s", name, want, out)
			}
			return nil
		})
	}
}
