package cluster_test

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestServiceClusterIP: kube-proxy's iptables rules take a ClusterIP Service to its pod,
// from another pod and from the node.
func TestServiceClusterIP(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	runPod(t, ns, "web", httpd, "")
	mustKubectl(t, "-n", ns, "expose", "pod", "web", "--port=8080", "--target-port=80", "--name=web")
	ip := mustKubectl(t, "-n", ns, "get", "service", "web", "-o", "jsonpath={.spec.clusterIP}")
	if ip == "" {
		t.Fatal("service web has no cluster IP")
	}
	url := fmt.Sprintf("http://%s:8080/", ip)
	// kube-proxy programs the rules once it sees the EndpointSlice: poll briefly.
	waitFor(t, time.Minute, "the service from the node", func() error {
		body, err := get(url)
		if err != nil {
			return err
		}
		if !strings.Contains(body, "It works!") {
			return fmt.Errorf("GET %s: %q", url, body)
		}
		return nil
	})
	runPod(t, ns, "client", busybox, stopOnTerm)
	// nc, not wget: the image's static busybox wget crashes (exit 139) on any URL.
	req := fmt.Sprintf(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 10 %s 8080 | grep 'It works!'`, ip)
	out, err := kubectl(t, "-n", ns, "exec", "client", "--", "sh", "-c", req)
	if err != nil || !strings.Contains(out, "It works!") {
		t.Fatalf("GET %s from a pod: %q, %v", url, out, err)
	}
}
