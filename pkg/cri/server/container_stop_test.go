package server

import (
	"context"
	"math"
	"slices"
	"syscall"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestStopTimeout(t *testing.T) {
	tests := []struct {
		seconds int64
		want    time.Duration
	}{
		{0, 0},
		{-1, 0},
		{math.MinInt64, 0},
		{30, 30 * time.Second},
		{int64(math.MaxInt64 / time.Second), time.Duration(math.MaxInt64/time.Second) * time.Second},
		{int64(math.MaxInt64/time.Second) + 1, math.MaxInt64},
		{math.MaxInt64, math.MaxInt64},
	}
	for _, tt := range tests {
		if got := stopTimeout(tt.seconds); got != tt.want {
			t.Errorf("stopTimeout(%d) = %s, want %s", tt.seconds, got, tt.want)
		}
	}
}

// TestStopContainerHugeTimeout: a grace period too long for a Duration still sends the
// stop signal first (the fake exits on it), instead of wrapping negative and killing.
func TestStopContainerHugeTimeout(t *testing.T) {
	for _, timeout := range []int64{math.MaxInt64, math.MaxInt64 / 1000, 1 << 40} {
		e := newTestEnv(t)
		ctx := context.Background()
		pod := podConfig("p")
		podID := e.runPod(t, pod)
		id := e.createContainer(t, podID, pod, containerConfig("app"))
		if _, err := e.svc.StartContainer(ctx, &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
			t.Fatal(err)
		}
		sctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := e.svc.StopContainer(sctx, &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: timeout})
		cancel()
		if err != nil {
			t.Fatalf("timeout %d: %v", timeout, err)
		}
		sh := e.shims.get(e.svc.shimDir(podID))
		sh.mu.Lock()
		got := slices.Clone(sh.containers[id].killSignals)
		sh.mu.Unlock()
		// The fake image's STOPSIGNAL is SIGQUIT.
		if want := []syscall.Signal{syscall.SIGQUIT}; !slices.Equal(got, want) {
			t.Errorf("timeout %d: signals = %v, want %v", timeout, got, want)
		}
	}
}
