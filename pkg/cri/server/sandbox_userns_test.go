package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/spec"
	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/network/netns"
)

func idmap(container, host, length uint32) *runtimeapi.IDMapping {
	return &runtimeapi.IDMapping{ContainerId: container, HostId: host, Length: length}
}

// withUserNS gives the pod a user namespace option; ns modes other than user are kept.
func withUserNS(u *runtimeapi.UserNamespace) func(*runtimeapi.PodSandboxConfig) {
	return func(c *runtimeapi.PodSandboxConfig) {
		if c.Linux.SecurityContext == nil {
			c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{}
		}
		if c.Linux.SecurityContext.NamespaceOptions == nil {
			c.Linux.SecurityContext.NamespaceOptions = &runtimeapi.NamespaceOption{}
		}
		c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u
	}
}

func kubeletUserNS() *runtimeapi.UserNamespace {
	return &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD,
		Uids: []*runtimeapi.IDMapping{idmap(0, 100000, 65536)},
		Gids: []*runtimeapi.IDMapping{idmap(0, 100000, 65536)},
	}
}

func TestRunPodSandboxUserNSInvalid(t *testing.T) {
	two := kubeletUserNS()
	two.Uids = append(two.Uids, idmap(65536, 300000, 10))
	unmapped := kubeletUserNS()
	unmapped.Gids = []*runtimeapi.IDMapping{idmap(1, 100000, 65536)}
	container := kubeletUserNS()
	container.Mode = runtimeapi.NamespaceMode_CONTAINER
	target := kubeletUserNS()
	target.Mode = runtimeapi.NamespaceMode_TARGET
	hostMode := func(set func(*runtimeapi.NamespaceOption)) func(*runtimeapi.PodSandboxConfig) {
		return func(c *runtimeapi.PodSandboxConfig) {
			withUserNS(kubeletUserNS())(c)
			set(c.Linux.SecurityContext.NamespaceOptions)
		}
	}
	tests := []struct {
		name string
		opt  func(*runtimeapi.PodSandboxConfig)
	}{
		{"two uid ranges", withUserNS(two)},
		{"root unmapped", withUserNS(unmapped)},
		{"mode CONTAINER", withUserNS(container)},
		{"mode TARGET", withUserNS(target)},
		{"host network", hostMode(func(n *runtimeapi.NamespaceOption) { n.Network = runtimeapi.NamespaceMode_NODE })},
		{"host pid", hostMode(func(n *runtimeapi.NamespaceOption) { n.Pid = runtimeapi.NamespaceMode_NODE })},
		{"host ipc", hostMode(func(n *runtimeapi.NamespaceOption) { n.Ipc = runtimeapi.NamespaceMode_NODE })},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p", tt.opt)})
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("RunPodSandbox = %v, want invalid argument", err)
			}
			// Refused before any side effect.
			if n := len(e.shims.shims); n != 0 {
				t.Errorf("%d shims started", n)
			}
			for _, dir := range []string{filepath.Join(e.cfg.State, "netns"), filepath.Join(e.cfg.State, "sandboxes")} {
				if entries, _ := os.ReadDir(dir); len(entries) > 0 {
					t.Errorf("%s has %d entries", dir, len(entries))
				}
			}
			e.assertNothingLeft(t)
			// The name is free again.
			if _, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")}); err != nil {
				t.Errorf("RunPodSandbox of the same name without user namespace: %v", err)
			}
		})
	}
}

func TestRunPodSandboxUserNSRecordsPin(t *testing.T) {
	e := newTestEnv(t)
	id := e.runPod(t, podConfig("p", withUserNS(kubeletUserNS())))
	want := filepath.Join(e.cfg.State, "netns", id, "user")
	sb, err := e.svc.store.Sandboxes.Resolve(id)
	if err != nil {
		t.Fatal(err)
	}
	if got := podUserNSPath(sb.Metadata()); got != want {
		t.Errorf("podUserNSPath = %q, want %q", got, want)
	}
	if got := sandboxInfo(sb.Metadata(), sb.Status()).UserNSPath; got != want {
		t.Errorf("SandboxInfo.UserNSPath = %q, want %q", got, want)
	}
	rs, err := e.svc.store.ResourcesOf(id)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, r := range rs {
		found = found || (r.Kind == store.KindNetNS && r.Path == want)
	}
	if !found {
		t.Errorf("user namespace pin %s not recorded: %+v", want, rs)
	}
	if _, err := e.svc.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.RemovePodSandbox(context.Background(), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	e.assertNothingLeft(t)
}

func TestPodUserNSPathWithoutUserNS(t *testing.T) {
	md := store.SandboxMetadata{ID: "x", NetNS: "/run/berth/netns/x/net", Config: store.PodConfig{PodSandboxConfig: podConfig("p")}}
	if got := podUserNSPath(md); got != "" {
		t.Errorf("podUserNSPath without user namespace = %q", got)
	}
	md.Config.PodSandboxConfig = podConfig("p", withUserNS(&runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}))
	if got := podUserNSPath(md); got != "" {
		t.Errorf("podUserNSPath with mode NODE = %q", got)
	}
}

func TestHostRoot(t *testing.T) {
	m := spec.IDMappings{
		UIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []specs.LinuxIDMapping{{ContainerID: 1, HostID: 200000, Size: 10}},
	}
	if got := hostRoot(m.UIDs); got != 100000 {
		t.Errorf("hostRoot(uids) = %d", got)
	}
	if got := hostRoot(m.GIDs); got != -1 {
		t.Errorf("hostRoot(gids without 0) = %d", got)
	}
	if err := chownToPodRoot(m, t.TempDir()); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("chownToPodRoot with unmapped gid 0 = %v", err)
	}
}

// testUserNS pins a user namespace mapping 0 to 100000 (65536 ids) for the test.
func testUserNS(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	dir := filepath.Join(t.TempDir(), "ns")
	m := []netns.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	p, err := netns.Create(netns.Options{Dir: dir, UTS: true, UserNS: &netns.UserNS{UIDs: m, GIDs: m}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, path := range []string{p.UTS, p.User} {
			if err := netns.Unpin(path); err != nil {
				t.Errorf("unpin %s: %v", path, err)
			}
		}
	})
	return p.User
}

func TestStageIDMapped(t *testing.T) {
	userns := testUserNS(t)
	src := t.TempDir()
	if err := os.WriteFile(filepath.Join(src, "f"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(t.TempDir(), "staged")
	if err := stageIDMapped(src, dst, userns); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := (hostMounter{}).Unmount(dst); err != nil {
			t.Errorf("unmount: %v", err)
		}
	})
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "f"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Uid != 100000 || st.Gid != 100000 {
		t.Errorf("root-owned file through the idmapped mount is %d:%d, want 100000:100000", st.Uid, st.Gid)
	}
	// Read-only: the layers are shared with other containers.
	if err := os.WriteFile(filepath.Join(dst, "g"), nil, 0o644); !errors.Is(err, unix.EROFS) {
		t.Errorf("write through the staged layer = %v, want EROFS", err)
	}
	if err := os.RemoveAll(dst); err == nil {
		t.Error("RemoveAll of a staged layer succeeded; it must not reach the layer")
	}
	if _, err := os.Stat(filepath.Join(src, "f")); err != nil {
		t.Errorf("layer file gone: %v", err)
	}
}

func TestProbeUserNamespaces(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	root, state := t.TempDir(), t.TempDir()
	if u := probeUserNamespaces(root, state, log); !u.enabled || u.reason != "" {
		t.Errorf("probe on temp dirs = %+v, want enabled (6.x supports idmapped mounts)", u)
	}
	// A root dir that cannot be created disables them, with the reason.
	if u := probeUserNamespaces("/proc/berth-no-such-dir", state, log); u.enabled || u.reason == "" {
		t.Errorf("probe on an impossible root dir = %+v, want disabled with a reason", u)
	}
	// A state dir that cannot be created still leaves them on: only bind mounts depend on it.
	if u := probeUserNamespaces(root, "/proc/berth-no-such-dir", log); !u.enabled {
		t.Errorf("probe with an impossible state dir = %+v, want enabled", u)
	}
}

func TestIDMapUnsupported(t *testing.T) {
	var st unix.Statfs_t
	dir := t.TempDir()
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	ids := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	newSpec := func() *specs.Spec {
		return &specs.Spec{Mounts: []specs.Mount{
			{Destination: "/data", Source: dir, Type: "bind", UIDMappings: ids, GIDMappings: ids},
			{Destination: "/etc/hosts", Source: filepath.Join(state, "hosts"), Type: "bind", UIDMappings: ids, GIDMappings: ids},
			{Destination: "/proc", Source: "proc", Type: "proc"},
		}}
	}
	t.Run("filesystem without idmap", func(t *testing.T) {
		if err := os.MkdirAll(state, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(state, "hosts"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		u := userNSSupport{enabled: true, noIDMap: map[int64]bool{int64(st.Type): true}}
		sp := newSpec()
		notes := u.idmapUnsupported(sp, state)
		for _, m := range sp.Mounts {
			if len(m.UIDMappings) > 0 || len(m.GIDMappings) > 0 {
				t.Errorf("mount %s keeps its idmap on a filesystem that cannot idmap", m.Destination)
			}
		}
		// The request's mount is reported; berth's own pod files are not.
		if len(notes) != 1 || !strings.Contains(notes[0], "/data") {
			t.Errorf("notes = %q, want one about /data", notes)
		}
	})
	t.Run("filesystem with idmap", func(t *testing.T) {
		u := userNSSupport{enabled: true, noIDMap: map[int64]bool{int64(st.Type) + 1: true}}
		sp := newSpec()
		if notes := u.idmapUnsupported(sp, state); len(notes) != 0 {
			t.Errorf("notes = %q, want none", notes)
		}
		if len(sp.Mounts[0].UIDMappings) == 0 {
			t.Error("idmap removed from a mount whose filesystem can idmap")
		}
	})
}

func TestSearchableByOthers(t *testing.T) {
	root := filepath.Join(t.TempDir(), "state")
	dir := filepath.Join(root, "containers", "c1")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(root, 0o700|os.ModeSetgid); err != nil {
		t.Fatal(err)
	}
	if err := searchableByOthers(root, dir); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{root, filepath.Join(root, "containers"), dir} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode()&0o001 == 0 || fi.Mode()&0o006 != 0 {
			t.Errorf("%s mode %v, want others' search bit only", p, fi.Mode())
		}
	}
	if fi, _ := os.Stat(root); fi.Mode()&os.ModeSetgid == 0 {
		t.Errorf("setgid bit of %s lost: %v", root, fi.Mode())
	}
	if err := searchableByOthers(dir, root); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("searchableByOthers outside root = %v", err)
	}
}
