package store

import (
	"errors"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func openTest(t *testing.T, path string) *Store {
	t.Helper()
	db, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s := New(db)
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	return s
}

func testSandbox(id string) SandboxMetadata {
	return SandboxMetadata{
		ID:   id,
		Name: "pod_ns_uid_0",
		Config: PodConfig{&runtimeapi.PodSandboxConfig{
			Metadata: &runtimeapi.PodSandboxMetadata{Name: "pod", Namespace: "ns", Uid: "uid"},
			Labels:   map[string]string{"app": "web"},
		}},
		CreatedAt: time.Unix(0, 12345),
		NetNS:     "/run/berth/netns/" + id + "/net",
	}
}

func TestPersistAndReload(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	db, err := Open(path, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := New(db)
	sb, err := s.Sandboxes.Add("sb1", testSandbox("sb1"), SandboxStatus{State: SandboxReady})
	if err != nil {
		t.Fatal(err)
	}
	if err := sb.Update(func(st *SandboxStatus) error { st.Pid = 42; return nil }); err != nil {
		t.Fatal(err)
	}
	cm := ContainerMetadata{ID: "c1", SandboxID: "sb1", Config: ContainerConfig{&runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app", Attempt: 2},
	}}, User: User{UID: 1000, GID: 1000, SupplementalGroups: []uint32{10}}}
	c, err := s.Containers.Add("c1", cm, ContainerStatus{State: ContainerCreated})
	if err != nil {
		t.Fatal(err)
	}
	err = c.Update(func(st *ContainerStatus) error {
		st.Resources = Resources{&runtimeapi.LinuxContainerResources{CpuShares: 512}}
		st.Exited(3, time.Unix(10, 0), false, "")
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.AddResource(Resource{Kind: KindMount, Path: "/x", Owner: "sb1"}); err != nil {
		t.Fatal(err)
	}
	db.Close()

	s2 := openTest(t, path)
	sb2, err := s2.Sandboxes.Get("sb1")
	if err != nil {
		t.Fatal(err)
	}
	if got := sb2.Status(); got.Pid != 42 || got.State != SandboxReady {
		t.Fatalf("reloaded sandbox status = %+v", got)
	}
	md := sb2.Metadata()
	if md.Config.GetMetadata().GetUid() != "uid" || md.Config.GetLabels()["app"] != "web" || !md.CreatedAt.Equal(time.Unix(0, 12345)) {
		t.Fatalf("reloaded sandbox metadata = %+v", md)
	}
	c2, err := s2.Containers.Get("c1")
	if err != nil {
		t.Fatal(err)
	}
	st := c2.Status()
	if st.State != ContainerExited || st.ExitCode != 3 || st.Reason != ReasonError || st.Resources.GetCpuShares() != 512 {
		t.Fatalf("reloaded container status = %+v", st)
	}
	if c2.Metadata().Config.GetMetadata().GetAttempt() != 2 || c2.Metadata().User.SupplementalGroups[0] != 10 {
		t.Fatalf("reloaded container metadata = %+v", c2.Metadata())
	}
	rs, err := s2.Resources()
	if err != nil || len(rs) != 1 || rs[0].Path != "/x" {
		t.Fatalf("resources = %v, %v", rs, err)
	}
	if got := s2.ContainersOf("sb1"); len(got) != 1 {
		t.Fatalf("ContainersOf = %d records", len(got))
	}
}

func TestUpdateFailureLeavesStatus(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	sb, err := s.Sandboxes.Add("sb1", testSandbox("sb1"), SandboxStatus{State: SandboxReady, Pid: 1})
	if err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = sb.Update(func(st *SandboxStatus) error {
		st.Pid = 99
		st.State = SandboxNotReady
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("Update = %v, want boom", err)
	}
	if got := sb.Status(); got.Pid != 1 || got.State != SandboxReady {
		t.Fatalf("status changed by failed update: %+v", got)
	}
}

func TestStatusIsACopy(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	c, err := s.Containers.Add("c", ContainerMetadata{ID: "c"}, ContainerStatus{
		Resources: Resources{&runtimeapi.LinuxContainerResources{CpuShares: 2}},
	})
	if err != nil {
		t.Fatal(err)
	}
	st := c.Status()
	st.Resources.CpuShares = 100
	if got := c.Status().Resources.GetCpuShares(); got != 2 {
		t.Fatalf("mutating a returned status changed the record: cpu shares %d", got)
	}
}

func TestConcurrentUpdates(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	sb, err := s.Sandboxes.Add("sb1", testSandbox("sb1"), SandboxStatus{})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := sb.Update(func(st *SandboxStatus) error { st.Pid++; return nil }); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if got := sb.Status().Pid; got != 20 {
		t.Fatalf("pid = %d after 20 increments", got)
	}
}

func TestResolve(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	for _, id := range []string{"abc123", "abd456", "ff"} {
		if _, err := s.Sandboxes.Add(id, testSandbox(id), SandboxStatus{}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name    string
		query   string
		want    string
		wantErr error
	}{
		{name: "full id", query: "abc123", want: "abc123"},
		{name: "unique prefix", query: "abd", want: "abd456"},
		{name: "ambiguous prefix", query: "ab", wantErr: errdefs.ErrInvalidArgument},
		{name: "no match", query: "zz", wantErr: errdefs.ErrNotFound},
		{name: "empty", query: "", wantErr: errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := s.Sandboxes.Resolve(tt.query)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Resolve(%q) = %v, want %v", tt.query, err, tt.wantErr)
				}
				return
			}
			if err != nil || r.ID() != tt.want {
				t.Fatalf("Resolve(%q) = %v, %v; want %s", tt.query, r, err, tt.want)
			}
		})
	}
}

func TestDeleteStopsUpdates(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	s := openTest(t, path)
	sb, err := s.Sandboxes.Add("sb1", testSandbox("sb1"), SandboxStatus{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sandboxes.Add("sb1", testSandbox("sb1"), SandboxStatus{}); !errdefs.IsAlreadyExists(err) {
		t.Fatalf("second Add = %v, want AlreadyExists", err)
	}
	if err := s.Sandboxes.Delete("sb1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Sandboxes.Delete("sb1"); err != nil {
		t.Fatalf("second Delete = %v, want nil", err)
	}
	if err := sb.Update(func(*SandboxStatus) error { return nil }); !errdefs.IsNotFound(err) {
		t.Fatalf("Update after Delete = %v, want NotFound", err)
	}
	if err := s.Load(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Sandboxes.Get("sb1"); !errdefs.IsNotFound(err) {
		t.Fatalf("deleted sandbox came back from disk: %v", err)
	}
}

func TestOpenLockedFailsFast(t *testing.T) {
	path := filepath.Join(t.TempDir(), "meta.db")
	openTest(t, path)
	start := time.Now()
	_, err := Open(path, 100*time.Millisecond)
	if !errdefs.IsUnavailable(err) {
		t.Fatalf("second Open = %v, want Unavailable", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open took %s", d)
	}
}

func TestResourcesReleaseOrder(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	add := []Resource{
		{Kind: KindDir, Path: "/run/berth/sandboxes/a", Owner: "a"},
		{Kind: KindCgroup, Path: "/berth/a", Owner: "a"},
		{Kind: KindMount, Path: "/run/berth/sandboxes/a/shm", Owner: "a"},
		{Kind: KindShim, Path: "/run/berth/shims/a", Owner: "a"},
		{Kind: KindDir, Path: "/run/berth/sandboxes/a/x", Owner: "a"},
		{Kind: KindLease, Path: "sha256:1", Owner: "b"},
	}
	for _, r := range add {
		if err := s.AddResource(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.ResourcesOf("a")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"/run/berth/shims/a", "/run/berth/sandboxes/a/shm", "/berth/a", "/run/berth/sandboxes/a/x", "/run/berth/sandboxes/a"}
	if len(got) != len(want) {
		t.Fatalf("got %d resources, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Path != want[i] {
			t.Fatalf("release order[%d] = %s, want %s (all: %v)", i, got[i].Path, want[i], got)
		}
	}
	if err := s.RemoveResource(add[0]); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ResourcesOf("a"); len(got) != 4 {
		t.Fatalf("after remove: %d resources", len(got))
	}
	// Several at once, one of them already forgotten.
	if err := s.RemoveResources([]Resource{add[0], add[1], add[2]}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ResourcesOf("a"); len(got) != 2 {
		t.Fatalf("after removing three: %d resources, want 2", len(got))
	}
}

func TestSharedResourceOwners(t *testing.T) {
	s := openTest(t, filepath.Join(t.TempDir(), "meta.db"))
	for _, owner := range []string{"c1", "c2"} {
		if err := s.AddResource(Resource{Kind: KindLease, Path: "sha256:1", Owner: owner}); err != nil {
			t.Fatal(err)
		}
	}
	for _, owner := range []string{"c1", "c2"} {
		if got, _ := s.ResourcesOf(owner); len(got) != 1 {
			t.Fatalf("owner %s holds %d resources, want 1", owner, len(got))
		}
	}
}
