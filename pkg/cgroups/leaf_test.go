package cgroups

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeV2Level makes dir look like a cgroup2 directory that offers the given controllers and
// has the given ones enabled for its children. The files are plain files: a write replaces
// the content, so after enableControllers subtree_control holds exactly what was added.
func fakeV2Level(t *testing.T, dir, offered, enabled string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for f, v := range map[string]string{"cgroup.controllers": offered, "cgroup.subtree_control": enabled} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(v), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func readSubtree(t *testing.T, dir string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.subtree_control"))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// Every level from the root down to the pod itself, the pod included, gets the delegated
// controllers it offers and lacks; others (misc, rdma) are left alone.
func TestEnableControllersDownToPod(t *testing.T) {
	root := t.TempDir()
	fakeV2Level(t, root, "cpuset cpu io memory hugetlb pids rdma misc", "cpu memory pids")
	fakeV2Level(t, filepath.Join(root, "berth"), "cpuset cpu io memory hugetlb pids", "")
	// A node without io and hugetlb below this level: they must not be asked for.
	fakeV2Level(t, filepath.Join(root, "berth", "pod1"), "cpu memory pids cpuset", "")

	if err := enableControllers(root, "/berth/pod1"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ dir, want string }{
		{root, "+cpuset +io +hugetlb"},
		{filepath.Join(root, "berth"), "+cpu +cpuset +io +memory +pids +hugetlb"},
		{filepath.Join(root, "berth", "pod1"), "+cpu +cpuset +memory +pids"},
	} {
		if got := readSubtree(t, tt.dir); got != tt.want {
			t.Errorf("subtree_control of %s = %q, want %q", tt.dir, got, tt.want)
		}
	}
}

// A level that already has everything is left untouched: a write to a populated non-root
// cgroup fails even when it changes nothing.
func TestEnableControllersSkipsEnabledLevels(t *testing.T) {
	root := t.TempDir()
	kube := filepath.Join(root, "kubepods")
	pod := filepath.Join(kube, "pod1")
	fakeV2Level(t, root, "cpu memory", "cpu memory")
	fakeV2Level(t, kube, "cpu memory", "memory cpu")
	fakeV2Level(t, pod, "cpu memory", "")
	if err := enableControllers(root, "kubepods/pod1"); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ dir, want string }{
		{root, "cpu memory"},
		{kube, "memory cpu"},
		{pod, "+cpu +memory"},
	} {
		if got := readSubtree(t, tt.dir); got != tt.want {
			t.Errorf("subtree_control of %s = %q, want %q", tt.dir, got, tt.want)
		}
	}
}

// A level that is not a cgroup (or is gone) fails with its path in the error.
func TestEnableControllersMissingLevel(t *testing.T) {
	root := t.TempDir()
	fakeV2Level(t, root, "cpu memory", "cpu memory")
	err := enableControllers(root, "/berth/pod1")
	if err == nil || !strings.Contains(err.Error(), filepath.Join(root, "berth")) {
		t.Fatalf("enableControllers on a missing level = %v, want an error naming %s", err, filepath.Join(root, "berth"))
	}
}

func TestPodInitPath(t *testing.T) {
	for _, tt := range []struct{ pod, want string }{
		{"/berth/abc", "/berth/abc/pod-init"},
		{"/kubepods/burstable/pod1/", "/kubepods/burstable/pod1/pod-init"},
	} {
		if got := PodInitPath(tt.pod); got != tt.want {
			t.Errorf("PodInitPath(%q) = %q, want %q", tt.pod, got, tt.want)
		}
	}
}
