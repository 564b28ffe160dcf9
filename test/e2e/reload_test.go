package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestSIGHUPReloadsPinned: SIGHUP makes the running agent re-read its config file: an image
// pinned in the file since startup is reported pinned without a restart, and a changed
// setting that needs one is named in the log.
func TestSIGHUPReloadsPinned(t *testing.T) {
	a := newAgent(t, agentOptions{})
	pull(t, a, env.images.busybox)
	if img := imageStatus(t, a, env.images.busybox); img.GetPinned() {
		t.Fatal("image pinned before the config pinned it")
	}
	file := filepath.Join(a.root, "config.toml")
	f, err := os.OpenFile(file, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = fmt.Fprintf(f, "\ncgroup_driver_unused_marker = 0\n")
	f.Close()
	if err != nil {
		t.Fatal(err)
	}
	// An unknown key makes the file invalid: the reload must change nothing.
	if err := syscall.Kill(a.pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitAgentLog(t, a, "reload: configuration not applied")
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	fixed := strings.Replace(string(data), "\ncgroup_driver_unused_marker = 0\n", "", 1)
	// Top-level keys go before the first table.
	fixed = "log_format = \"json\"\n" + fixed + fmt.Sprintf("\n[images]\npinned = [%q]\n", env.images.busybox)
	if err := os.WriteFile(file, []byte(fixed), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(a.pid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for !imageStatus(t, a, env.images.busybox).GetPinned() {
		if time.Now().After(deadline) {
			t.Fatal("image not pinned after SIGHUP")
		}
		time.Sleep(50 * time.Millisecond)
	}
	waitAgentLog(t, a, "settings=[log_format]")
}

// waitAgentLog waits until the agent's log holds s.
func waitAgentLog(t *testing.T, a *agent, s string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, _ := os.ReadFile(a.logPath)
		if strings.Contains(string(b), s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("agent log never said %q:\n%s", s, a.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
}
