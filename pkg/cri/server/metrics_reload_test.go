package server

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSetMetricsAddress: the metrics endpoint moves, stops and starts again without a restart,
// and metrics.addr always names where it is.
func TestSetMetricsAddress(t *testing.T) {
	e := newTestEnv(t)
	addrFile := filepath.Join(e.cfg.State, "metrics.addr")
	serving := func() string {
		t.Helper()
		b, err := os.ReadFile(addrFile)
		if err != nil {
			t.Fatalf("metrics.addr: %v", err)
		}
		addr := strings.TrimSpace(string(b))
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			t.Fatalf("GET /metrics on %s: %v", addr, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /metrics on %s: %s", addr, resp.Status)
		}
		return addr
	}
	if err := e.svc.SetMetricsAddress("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	first := serving()
	if err := e.svc.SetMetricsAddress("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if again := serving(); again != first {
		t.Fatalf("setting the same address moved the endpoint from %s to %s", first, again)
	}
	if err := e.svc.SetMetricsAddress("localhost:0"); err != nil {
		t.Fatal(err)
	}
	moved := serving()
	if _, err := http.Get("http://" + first + "/metrics"); err == nil {
		t.Fatalf("old address %s still serves after the move to %s", first, moved)
	}
	if err := e.svc.SetMetricsAddress(""); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(addrFile); !os.IsNotExist(err) {
		t.Fatalf("metrics.addr left after metrics were turned off: %v", err)
	}
	if _, err := http.Get("http://" + moved + "/metrics"); err == nil {
		t.Fatal("metrics still served after they were turned off")
	}
}
