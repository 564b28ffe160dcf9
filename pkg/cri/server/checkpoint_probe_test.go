package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

// fakeCriu puts a `criu` that runs script first on PATH.
func fakeCriu(t *testing.T, script string) {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "criu"), []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
}

// A `criu check` that hangs (as on a node whose resolver does not answer) keeps neither the
// service's start nor anything but checkpoint and restore waiting, and ends with the agent.
func TestCheckpointProbeDoesNotHoldStartup(t *testing.T) {
	fakeCriu(t, "exec sleep 60")
	stop := make(chan struct{})
	start := time.Now()
	p := startCheckpointProbe(discardLog(), stop)
	if d := time.Since(start); d > time.Second {
		t.Fatalf("starting the probe took %s", d)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := p.wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait while criu check runs: %v, want the caller's deadline", err)
	}

	close(stop)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	c, err := p.wait(ctx2)
	if err != nil {
		t.Fatalf("the probe did not end with the agent: %v", err)
	}
	if c.Available || !strings.Contains(c.Reason, "criu check") {
		t.Errorf("verdict after the agent stopped: %+v", c)
	}
}

func TestCheckpointProbeVerdict(t *testing.T) {
	for _, tc := range []struct {
		name, script string
		available    bool
		reason       string
	}{
		{"passes", "echo Looks good.", true, ""},
		{"fails", "echo 'Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable'; exit 1", false, "vdso: Failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fakeCriu(t, tc.script)
			stop := make(chan struct{})
			defer close(stop)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := startCheckpointProbe(discardLog(), stop).wait(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if c.Available != tc.available || !strings.Contains(c.Reason, tc.reason) {
				t.Errorf("verdict %+v, want available=%v and a reason with %q", c, tc.available, tc.reason)
			}
		})
	}
}

// checkpointAllowed answers Unimplemented with the probe's reason on a node that cannot.
func TestCheckpointAllowedReason(t *testing.T) {
	s := &Service{checkpoint: knownCheckpoint(CheckpointSupport{Reason: "criu is not installed"})}
	err := s.checkpointAllowed(context.Background())
	if !errdefs.IsNotImplemented(err) || !strings.Contains(err.Error(), "criu is not installed") {
		t.Errorf("checkpointAllowed: %v", err)
	}
	s.checkpoint = knownCheckpoint(CheckpointSupport{Available: true})
	if err := s.checkpointAllowed(context.Background()); err != nil {
		t.Errorf("checkpointAllowed on a node that can: %v", err)
	}
}
