package cgroups

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	cg "github.com/opencontainers/cgroups"
)

func TestOOMKills(t *testing.T) {
	cg.TestMode = true // files in a temp dir stand in for cgroupfs
	t.Cleanup(func() { cg.TestMode = false })
	v1, v2 := t.TempDir(), t.TempDir()
	write := func(dir, name, body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write(v1, "memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 3\n")
	write(v2, "memory.events", "low 0\nhigh 0\nmax 7\noom 2\noom_kill 2\noom_group_kill 0\n")
	empty := t.TempDir()
	write(empty, "memory.events", "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\n")

	for _, tc := range []struct {
		name  string
		paths map[string]string
		want  uint64
	}{
		{"v1", map[string]string{"memory": v1, "cpu": t.TempDir()}, 3},
		// Hybrid: the unified hierarchy holds no memory controller; memory's v1 path counts.
		{"hybrid", map[string]string{"memory": v1, "": empty}, 3},
		{"v2", map[string]string{"": v2}, 2},
		{"v2 no kills", map[string]string{"": empty}, 0},
	} {
		got, err := OOMKills(tc.paths)
		if err != nil || got != tc.want {
			t.Errorf("%s: OOMKills = %d, %v; want %d", tc.name, got, err, tc.want)
		}
	}
	if _, err := OOMKills(map[string]string{"cpu": v1}); !errdefs.IsNotFound(err) {
		t.Errorf("no memory cgroup: err = %v, want NotFound", err)
	}
	if _, err := OOMKills(map[string]string{"memory": filepath.Join(v1, "gone")}); !errdefs.IsNotFound(err) {
		t.Errorf("removed cgroup: err = %v, want NotFound", err)
	}
}
