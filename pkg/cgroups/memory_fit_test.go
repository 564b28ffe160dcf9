package cgroups

import (
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestMemoryFits(t *testing.T) {
	requireRoot(t)
	ctr := filepath.Join(testCgroup(t), "ctr")
	if err := EnsurePod(ctr); err != nil {
		t.Fatal(err)
	}
	holdMemory(t, ctr)
	m, err := newManager(ctr)
	if err != nil {
		t.Fatal(err)
	}
	paths := m.GetPaths()
	tests := []struct {
		name    string
		paths   map[string]string
		limit   int64
		refused bool
	}{
		{"below usage", paths, 16 << 10, true},
		{"above usage", paths, 1 << 30, false},
		{"no limit", paths, 0, false},
		{"unlimited", paths, -1, false},
		{"no memory cgroup", map[string]string{}, 16 << 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := MemoryFits(tt.paths, tt.limit)
			if tt.refused != errdefs.IsFailedPrecondition(err) || (!tt.refused && err != nil) {
				t.Fatalf("MemoryFits(%d) = %v, refused want %v", tt.limit, err, tt.refused)
			}
		})
	}
}
