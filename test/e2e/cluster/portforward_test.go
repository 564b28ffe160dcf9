package cluster_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

var forwardingRE = regexp.MustCompile(`Forwarding from 127\.0\.0\.1:(\d+) -> 80`)

// TestPortForward: kubectl port-forward to the pod's port 80, reached on 127.0.0.1.
func TestPortForward(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	runPod(t, ns, "web", httpd, "")
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) {
			port := portForward(t, tr.env, ns, "pod/web")
			for i := range 3 { // each request is a new stream over the one connection
				body := httpGet(t, fmt.Sprintf("http://127.0.0.1:%s/", port))
				if !strings.Contains(body, "It works!") {
					t.Fatalf("request %d through the forward: %q", i, body)
				}
			}
		})
	}
}

// portForward starts kubectl port-forward to target's port 80 on a free local port, stopped
// when the test ends, and returns the local port.
func portForward(t *testing.T, extraEnv []string, ns, target string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, env.kubectl, "-n", ns, "port-forward", "--address", "127.0.0.1", target, ":80")
	cmd.Env = append(append(os.Environ(), "KUBECONFIG="+env.kubeconfig), extraEnv...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := forwardingRE.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
	}()
	select {
	case p := <-found:
		return p
	case <-time.After(time.Minute):
		t.Fatalf("kubectl port-forward did not start: %s", stderr.String())
		return ""
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	body, err := get(url)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

// get makes one request on a new connection: a kept-alive one would stick to whatever
// answered first, e.g. this sandbox's intercepting HTTP proxy, which answers 404 for a
// Service IP that kube-proxy has not programmed yet.
func get(url string) (string, error) {
	c := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := c.Get(url)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("GET %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("GET %s: %s: %q", url, resp.Status, b)
	}
	return string(b), nil
}
