package server

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/network/netns"
)

// newDoctorService builds an offline Service over the env's state with the host's mounts,
// namespaces and cgroups, as `berth doctor` does.
func newDoctorService(t *testing.T, e *testEnv) *Service {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the doctor examines real mounts, namespaces and cgroups: needs root")
	}
	svc, err := New(Options{
		Config: e.cfg, Images: struct{ ImageStore }{}, ContainerImages: e.images, Shims: e.shims,
		Network: e.net, Offline: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close() })
	return svc
}

func findingsOf(rep DoctorReport, problem, kind string) []Finding {
	var out []Finding
	for _, f := range rep.Findings {
		if f.Problem == problem && f.Kind == kind {
			out = append(out, f)
		}
	}
	return out
}

// TestDoctorReleasesUnowned: a mount, a pinned netns, a pod cgroup and the pod's directories
// left by a sandbox whose record is gone are reported, released by Fix, and gone after.
func TestDoctorReleasesUnowned(t *testing.T) {
	e := newTestEnv(t)
	e.svc.Close()
	svc := newDoctorService(t, e)
	id := strings.Repeat("d0", 32)
	podDir := filepath.Join(e.cfg.State, "sandboxes", id)
	shm := filepath.Join(podDir, "shm")
	if err := os.MkdirAll(shm, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("shm", shm, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(shm, unix.MNT_DETACH) })
	nsDir := filepath.Join(e.cfg.State, "netns", id)
	paths, err := netns.Create(netns.Options{Dir: nsDir, Net: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = netns.Unpin(paths.Net) })
	cg := filepath.Join(cgroups.DefaultParent, id)
	// EnsurePod makes the parent too: remove it afterwards if it is this test's.
	parentBefore := cgroupExists(cgroups.DefaultParent)
	if err := cgroups.EnsurePod(cg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cgroups.Remove(cg)
		if !parentBefore {
			_ = cgroups.Remove(cgroups.DefaultParent)
		}
	})

	opts := DoctorOptions{SharedNode: true}
	rep, err := svc.Doctor(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []struct{ kind, path string }{
		{"mount", shm}, {"netns", paths.Net}, {"cgroup", cg}, {"dir", podDir}, {"dir", nsDir},
	} {
		fs := findingsOf(rep, ProblemUnowned, want.kind)
		if !slices.ContainsFunc(fs, func(f Finding) bool { return f.Path == want.path && !f.Fixed }) {
			t.Errorf("unowned %s: got %+v, want one unfixed at %s", want.kind, fs, want.path)
		}
	}
	if rep.Unresolved() != len(rep.Findings) || len(rep.Findings) != 5 {
		t.Errorf("findings %+v: want the 5 above, none fixed", rep.Findings)
	}

	opts.Fix = true
	if rep, err = svc.Doctor(context.Background(), opts); err != nil {
		t.Fatal(err)
	}
	if rep.Unresolved() != 0 || len(rep.Findings) != 5 {
		t.Errorf("fix: %+v: want 5 findings, all released", rep.Findings)
	}
	if netns.IsPinned(paths.Net) || cgroupExists(cg) || fileExists(podDir) || fileExists(nsDir) {
		t.Errorf("after fix: netns pinned %v, cgroup %v, pod dir %v, netns dir %v",
			netns.IsPinned(paths.Net), cgroupExists(cg), fileExists(podDir), fileExists(nsDir))
	}
	if rep, err = svc.Doctor(context.Background(), DoctorOptions{SharedNode: true}); err != nil || len(rep.Findings) != 0 {
		t.Errorf("after fix: %+v, %v; want no finding", rep.Findings, err)
	}
}

// TestDoctorOrphanRecord: a ledger entry whose owner has no record goes through release,
// which unmounts the object and forgets the entry.
func TestDoctorOrphanRecord(t *testing.T) {
	e := newTestEnv(t)
	e.svc.Close()
	svc := newDoctorService(t, e)
	mp := filepath.Join(e.cfg.State, "containers", "gone", "rootfs")
	if err := os.MkdirAll(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	r := store.Resource{Kind: store.KindMount, Path: mp, Owner: "gone"}
	if err := svc.store.AddResource(r); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmp", mp, "tmpfs", 0, "size=64k"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = unix.Unmount(mp, unix.MNT_DETACH) })

	rep, err := svc.Doctor(context.Background(), DoctorOptions{SharedNode: true, Fix: true})
	if err != nil {
		t.Fatal(err)
	}
	if fs := findingsOf(rep, ProblemOrphanRecord, "mount"); len(fs) != 1 || !fs[0].Fixed {
		t.Errorf("orphan record: %+v, want one released", rep.Findings)
	}
	if ms, _ := readMounts(e.cfg.State); ms[mp] {
		t.Errorf("%s still mounted", mp)
	}
	if rs, _ := svc.store.Resources(); len(rs) != 0 {
		t.Errorf("ledger still holds %+v", rs)
	}
}

// TestDoctorMissing: a live pod whose ledger names a mount and a netns the node lacks (the
// fakes made none) is reported, and Fix leaves it reported: nothing can recreate them.
func TestDoctorMissing(t *testing.T) {
	e := newTestEnv(t)
	id := e.runPod(t, podConfig("missing"))
	e.svc.Close()
	svc := newDoctorService(t, e)
	rep, err := svc.Doctor(context.Background(), DoctorOptions{SharedNode: true, Fix: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"mount", "netns", "shim"} {
		fs := findingsOf(rep, ProblemMissing, kind)
		if len(fs) == 0 || fs[0].Owner != id || fs[0].Fixed {
			t.Errorf("missing %s: %+v, want unfixed findings owned by %s", kind, fs, id)
		}
	}
	if len(findingsOf(rep, ProblemUnowned, "dir")) != 0 {
		t.Errorf("the live pod's directories reported unowned: %+v", rep.Findings)
	}
}
