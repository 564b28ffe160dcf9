package cgroups

import (
	"path/filepath"
	"testing"

	cg "github.com/opencontainers/cgroups"
)

func TestFreezeAndThaw(t *testing.T) {
	requireRoot(t)
	pod := filepath.Join(testCgroup(t), "pod1")
	ctr := ContainerPath(pod, "c1")
	if err := EnsurePod(pod); err != nil {
		t.Fatal(err)
	}
	startInCgroup(t, ctr)
	m, err := newManager(ctr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		frozen bool
		want   cg.FreezerState
	}{{true, cg.Frozen}, {true, cg.Frozen}, {false, cg.Thawed}, {false, cg.Thawed}} {
		if err := Freeze(ctr, tt.frozen); err != nil {
			t.Fatalf("Freeze(%v): %v", tt.frozen, err)
		}
		if st, err := m.GetFreezerState(); err != nil || st != tt.want {
			t.Errorf("after Freeze(%v): state %q, %v; want %q", tt.frozen, st, err, tt.want)
		}
	}
	if err := Freeze("/", true); err == nil {
		t.Error("Freeze of the root cgroup was accepted")
	}
}
