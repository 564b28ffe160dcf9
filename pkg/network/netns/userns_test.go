package netns

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func kubeletMapping() *UserNS {
	m := []IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	return &UserNS{UIDs: m, GIDs: m}
}

// owner returns the inode of the user namespace owning the namespace at path.
func owner(t *testing.T, path string) uint64 {
	t.Helper()
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	u, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	if err != nil {
		t.Fatalf("NS_GET_USERNS %s: %v", path, err)
	}
	defer unix.Close(u)
	var st unix.Stat_t
	if err := unix.Fstat(u, &st); err != nil {
		t.Fatal(err)
	}
	return st.Ino
}

func TestCreateUserNS(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "ns")
	p := createForTest(t, Options{Dir: dir, Net: true, IPC: true, UTS: true, Hostname: "berth-userns", UserNS: kubeletMapping()})
	t.Cleanup(func() {
		if p.User != "" {
			if err := Unpin(p.User); err != nil {
				t.Errorf("Unpin(%s): %v", p.User, err)
			}
		}
	})
	if p.User != filepath.Join(dir, "user") || !IsPinned(p.User) {
		t.Fatalf("user namespace pinned at %q (pinned %v), want %s", p.User, IsPinned(p.User), filepath.Join(dir, "user"))
	}
	userIno := inode(t, p.User)
	if userIno == inode(t, "/proc/self/ns/user") {
		t.Fatal("pinned user namespace is the host's")
	}
	for _, path := range []string{p.Net, p.IPC, p.UTS} {
		if !IsPinned(path) {
			t.Errorf("%s not pinned", path)
		}
		if got := owner(t, path); got != userIno {
			t.Errorf("%s is owned by user namespace %d, want the new one %d", path, got, userIno)
		}
	}
	// The holder is gone: nothing but the pins holds the user namespace.
	procs, _ := filepath.Glob("/proc/[0-9]*/ns/user")
	for _, f := range procs {
		var st unix.Stat_t
		if unix.Stat(f, &st) == nil && st.Ino == userIno {
			t.Errorf("process %s is still in the new user namespace", strings.Split(f, "/")[2])
		}
	}
	err := DoNS(KindUTS, p.UTS, func() error {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		if h != "berth-userns" {
			t.Errorf("hostname in the new uts namespace = %q", h)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	err = Do(p.Net, func() error {
		lo, err := netlink.LinkByName("lo")
		if err != nil {
			return err
		}
		if lo.Attrs().Flags&net.FlagUp == 0 {
			t.Error("lo is down in the new netns")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := DoNS(KindUser, p.User, func() error { return nil }); !errdefs.IsNotImplemented(err) {
		t.Errorf("DoNS(user) = %v, want not implemented", err)
	}
}

func TestCreateUserNSInvalid(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name   string
		userns *UserNS
	}{
		{"no gids", &UserNS{UIDs: []IDMap{{0, 100000, 10}}}},
		{"zero size", &UserNS{UIDs: []IDMap{{0, 100000, 0}}, GIDs: []IDMap{{0, 100000, 10}}}},
		{"overflow", &UserNS{UIDs: []IDMap{{0, 0xffffff00, 0x1000}}, GIDs: []IDMap{{0, 100000, 10}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "ns")
			_, err := Create(Options{Dir: dir, Net: true, UserNS: tt.userns})
			if !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Create = %v, want invalid argument", err)
			}
			if m := mountsUnder(t, dir); len(m) > 0 {
				t.Errorf("left mounts %v", m)
			}
		})
	}
}
