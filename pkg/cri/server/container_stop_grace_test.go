package server

import (
	"context"
	"testing"
	"time"
)

func TestGraceWithin(t *testing.T) {
	tests := []struct {
		name     string
		deadline time.Duration // 0: no deadline
		timeout  time.Duration
		wantMin  time.Duration
		wantMax  time.Duration
	}{
		{"no deadline keeps the timeout", 0, 30 * time.Second, 30 * time.Second, 30 * time.Second},
		{"far deadline keeps the timeout", time.Minute, 2 * time.Second, 2 * time.Second, 2 * time.Second},
		{"deadline equal to the grace leaves room to kill", 2 * time.Second, 2 * time.Second, time.Second, 2*time.Second - killMargin},
		{"passed deadline kills at once", -time.Second, 5 * time.Second, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			if tt.deadline != 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, tt.deadline)
				defer cancel()
			}
			got := graceWithin(ctx, tt.timeout)
			if got < tt.wantMin || got > tt.wantMax {
				t.Fatalf("graceWithin = %s, want between %s and %s", got, tt.wantMin, tt.wantMax)
			}
		})
	}
}
