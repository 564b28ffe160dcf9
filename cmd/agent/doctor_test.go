package main

import (
	"net"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/pkg/config"
)

// TestDoctorRefusesRunningAgent: the doctor opens the stores, which allow one writer, so it
// refuses while an agent answers on the CRI socket.
func TestDoctorRefusesRunningAgent(t *testing.T) {
	dir := t.TempDir()
	cfg := config.Default()
	cfg.Root, cfg.State, cfg.Listen = filepath.Join(dir, "root"), filepath.Join(dir, "state"), filepath.Join(dir, "berth.sock")
	if err := refuseRunningAgent(cfg); err != nil {
		t.Fatalf("no agent: %v", err)
	}
	lis, err := net.Listen("unix", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	err = refuseRunningAgent(cfg)
	if err == nil || !strings.Contains(err.Error(), cfg.Listen) || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("agent serving: %v, want a refusal naming %s", err, cfg.Listen)
	}
}
