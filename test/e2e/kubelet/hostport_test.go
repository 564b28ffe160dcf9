package kubelet_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestHostPort: a pod port published on the host's loopback reaches the
// container. Only 127.0.0.1 is used: the test sends no traffic off the machine.
func TestHostPort(t *testing.T) {
	t.Parallel()
	const name = "hostport"
	ports, err := freePorts(1)
	if err != nil {
		t.Fatal(err)
	}
	hostPort := ports[0]
	web := shell("web", "mkdir -p /www && echo berth-hostport-ok > /www/index.html && exec httpd -f -p 8080 -h /www")
	web.Ports = []port{{ContainerPort: 8080, HostPort: hostPort, HostIP: "127.0.0.1", Protocol: "TCP"}}
	runPod(t, newPod(name, withContainer(web)))

	p := waitPod(t, name, 2*time.Minute, "web running", running("web"))
	// Standalone, the kubelet's podCIDR reaches berth through UpdateRuntimeConfig.
	_, cidr, _ := net.ParseCIDR(kubeletSubnet)
	if ip := net.ParseIP(p.Status.PodIP); ip == nil || !cidr.Contains(ip) {
		t.Errorf("kubelet: pod IP %q is not in the kubelet's podCIDR %s", p.Status.PodIP, kubeletSubnet)
	}
	if _, err := crictlReadyPod(name); err != nil {
		t.Fatal(err)
	}
	url := fmt.Sprintf("http://127.0.0.1:%d/", hostPort)
	client := &http.Client{Timeout: 2 * time.Second}
	waitFor(t, time.Minute, "GET "+url+" to answer from the pod", func() (bool, string) {
		resp, err := client.Get(url)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && strings.Contains(string(body), "berth-hostport-ok"),
			fmt.Sprintf("%s: %q", resp.Status, body)
	})
}
