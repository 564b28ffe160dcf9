package netns

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

// threadsIn lists this process's threads that are in the namespace with inode ino, after
// giving exiting threads a moment to go.
func threadsIn(t *testing.T, kind Kind, ino uint64) []string {
	t.Helper()
	var in []string
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		in = in[:0]
		tasks, err := os.ReadDir("/proc/self/task")
		if err != nil {
			t.Fatal(err)
		}
		for _, task := range tasks {
			var st syscall.Stat_t
			if syscall.Stat(filepath.Join("/proc/self/task", task.Name(), "ns", string(kind)), &st) == nil && st.Ino == ino {
				in = append(in, task.Name())
			}
		}
		if len(in) == 0 || time.Now().After(deadline) {
			return in
		}
	}
}

// mountsUnder lists mount points at or below dir in this process's mount table.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

// createForTest creates namespaces and unpins them (checking nothing stays mounted) at cleanup.
func createForTest(t *testing.T, opts Options) Paths {
	t.Helper()
	p, err := Create(opts)
	t.Cleanup(func() {
		for _, path := range []string{p.Net, p.IPC, p.UTS} {
			if path == "" {
				continue
			}
			if err := Unpin(path); err != nil {
				t.Errorf("Unpin(%s): %v", path, err)
			}
		}
		if m := mountsUnder(t, opts.Dir); len(m) > 0 {
			t.Errorf("still mounted after cleanup: %v", m)
		}
	})
	if err != nil {
		t.Fatalf("Create(%+v): %v", opts, err)
	}
	return p
}

func TestCreateAll(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "ns")
	hostName, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	want := "berth-pod-" + strings.Repeat("x", 5)
	if want == hostName {
		want += "y"
	}
	hostIno := map[Kind]uint64{}
	for _, k := range []Kind{KindNet, KindIPC, KindUTS} {
		hostIno[k] = inode(t, "/proc/self/ns/"+string(k))
	}
	p := createForTest(t, Options{Dir: dir, Net: true, IPC: true, UTS: true, Hostname: want})

	for _, c := range []struct {
		kind Kind
		path string
	}{{KindNet, p.Net}, {KindIPC, p.IPC}, {KindUTS, p.UTS}} {
		if c.path != filepath.Join(dir, string(c.kind)) {
			t.Errorf("%s pinned at %q, want %q", c.kind, c.path, filepath.Join(dir, string(c.kind)))
		}
		if !IsPinned(c.path) {
			t.Errorf("%s: IsPinned(%s) = false", c.kind, c.path)
		}
		ino := inode(t, c.path)
		if ino == hostIno[c.kind] {
			t.Errorf("%s namespace at %s is the host's", c.kind, c.path)
		}
		// The thread that made the namespaces must be gone, not parked (the main thread
		// would be) or reused: only the pin may hold them.
		if left := threadsIn(t, c.kind, ino); len(left) > 0 {
			t.Errorf("threads %v of this process are still in the new %s namespace", left, c.kind)
		}
		if got := inode(t, "/proc/self/ns/"+string(c.kind)); got != hostIno[c.kind] {
			t.Errorf("process (main thread) %s namespace changed to %d", c.kind, got)
		}
	}
	if got, _ := os.Hostname(); got != hostName {
		t.Errorf("host hostname changed to %q", got)
	}

	// Inside the netns: only lo, and it is up.
	err = Do(p.Net, func() error {
		if got, want := inode(t, "/proc/thread-self/ns/net"), inode(t, p.Net); got != want {
			t.Errorf("Do ran in netns inode %d, want %d", got, want)
		}
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer h.Close()
		links, err := h.LinkList()
		if err != nil {
			return err
		}
		if len(links) != 1 || links[0].Attrs().Name != "lo" {
			var names []string
			for _, l := range links {
				names = append(names, l.Attrs().Name)
			}
			t.Errorf("links in new netns = %v, want only lo", names)
		}
		if len(links) > 0 && links[0].Attrs().Flags&net.FlagUp == 0 {
			t.Errorf("lo is down in the new netns")
		}
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}

	err = DoNS(KindUTS, p.UTS, func() error {
		got, err := os.Hostname()
		if err != nil {
			return err
		}
		if got != want {
			t.Errorf("hostname in uts ns = %q, want %q", got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("DoNS(uts): %v", err)
	}

	for _, path := range []string{p.Net, p.IPC, p.UTS} {
		if err := Unpin(path); err != nil {
			t.Fatalf("Unpin(%s): %v", path, err)
		}
		if err := Unpin(path); err != nil {
			t.Fatalf("second Unpin(%s): %v", path, err)
		}
		if IsPinned(path) {
			t.Errorf("%s still pinned", path)
		}
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s not removed: %v", path, err)
		}
	}
	if m := mountsUnder(t, dir); len(m) > 0 {
		t.Errorf("still mounted after Unpin: %v", m)
	}
	if err := Do(p.Net, func() error { return nil }); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("Do after Unpin = %v, want NotFound", err)
	}
}

func TestCreateSubsets(t *testing.T) {
	requireRoot(t)
	tests := []struct {
		name string
		opts Options
	}{
		{name: "net only", opts: Options{Net: true}},
		{name: "ipc and uts", opts: Options{IPC: true, UTS: true}},
		{name: "uts keeps host name copy", opts: Options{UTS: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.opts.Dir = t.TempDir()
			p := createForTest(t, tt.opts)
			for _, c := range []struct {
				want bool
				path string
			}{{tt.opts.Net, p.Net}, {tt.opts.IPC, p.IPC}, {tt.opts.UTS, p.UTS}} {
				if c.want != (c.path != "") {
					t.Errorf("paths %+v do not match request %+v", p, tt.opts)
				}
				if c.path != "" && !IsPinned(c.path) {
					t.Errorf("%s not pinned", c.path)
				}
			}
		})
	}
}

func TestCreateInvalid(t *testing.T) {
	tests := []struct {
		name string
		opts Options
	}{
		{name: "no dir", opts: Options{Net: true}},
		{name: "relative dir", opts: Options{Dir: "ns", Net: true}},
		{name: "nothing requested", opts: Options{Dir: "/run/berth-test-none"}},
		{name: "hostname without uts", opts: Options{Dir: "/run/berth-test-none", Net: true, Hostname: "h"}},
		{name: "hostname too long", opts: Options{Dir: "/run/berth-test-none", UTS: true, Hostname: strings.Repeat("h", 65)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Create(tt.opts); !errors.Is(err, errdefs.ErrInvalidArgument) {
				t.Fatalf("Create(%+v) = %v, want InvalidArgument", tt.opts, err)
			}
			if _, err := os.Stat("/run/berth-test-none"); err == nil {
				t.Fatal("Create made its dir before validating")
			}
		})
	}
}

// TestCreateRollsBack makes the last pin fail and checks the earlier ones were undone.
func TestCreateRollsBack(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	t.Cleanup(func() {
		for _, k := range []string{"net", "ipc"} {
			_ = Unpin(filepath.Join(dir, k))
		}
	})
	// A directory where the uts pin file should go: the file cannot be created.
	if err := os.Mkdir(filepath.Join(dir, "uts"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := Create(Options{Dir: dir, Net: true, IPC: true, UTS: true}); err == nil {
		t.Fatal("Create succeeded over a directory")
	}
	for _, k := range []string{"net", "ipc"} {
		if _, err := os.Lstat(filepath.Join(dir, k)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s left behind after failed Create: %v", k, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "uts")); err != nil {
		t.Errorf("pre-existing uts dir removed: %v", err)
	}
	if m := mountsUnder(t, dir); len(m) > 0 {
		t.Errorf("still mounted after failed Create: %v", m)
	}
}

func TestCreateRefusesPinnedPath(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	p := createForTest(t, Options{Dir: dir, Net: true})
	before := inode(t, p.Net)
	if _, err := Create(Options{Dir: dir, Net: true}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second Create over a pinned netns = %v, want AlreadyExists", err)
	}
	if !IsPinned(p.Net) || inode(t, p.Net) != before {
		t.Fatal("the first pin was disturbed by the refused Create")
	}
}

func TestDoErrors(t *testing.T) {
	requireRoot(t)
	dir := t.TempDir()
	p := createForTest(t, Options{Dir: dir, Net: true, UTS: true})
	plain := filepath.Join(dir, "plain")
	if err := os.WriteFile(plain, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	sentinel := errors.New("from fn")
	tests := []struct {
		name    string
		kind    Kind
		path    string
		fn      func() error
		wantErr error
	}{
		{name: "fn error returned", kind: KindNet, path: p.Net, fn: func() error { return sentinel }, wantErr: sentinel},
		{name: "missing path", kind: KindNet, path: filepath.Join(dir, "gone"), fn: func() error { return nil }, wantErr: errdefs.ErrNotFound},
		{name: "uts file as netns", kind: KindNet, path: p.UTS, fn: func() error { return nil }, wantErr: errdefs.ErrInvalidArgument},
		{name: "plain file", kind: KindNet, path: plain, fn: func() error { return nil }, wantErr: errdefs.ErrInvalidArgument},
		{name: "unknown kind", kind: Kind("mnt"), path: p.Net, fn: func() error { return nil }, wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ran := false
			fn := func() error { ran = true; return tt.fn() }
			err := DoNS(tt.kind, tt.path, fn)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("DoNS = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != sentinel && ran {
				t.Fatal("fn ran although entering the namespace failed")
			}
		})
	}
}

func TestUnpinMissingAndUnmounted(t *testing.T) {
	dir := t.TempDir()
	if err := Unpin(filepath.Join(dir, "never")); err != nil {
		t.Fatalf("Unpin(missing) = %v", err)
	}
	plain := filepath.Join(dir, "net")
	if err := os.WriteFile(plain, nil, 0o444); err != nil {
		t.Fatal(err)
	}
	if IsPinned(plain) {
		t.Fatal("IsPinned(plain file) = true")
	}
	if err := Unpin(plain); err != nil {
		t.Fatalf("Unpin(unmounted file) = %v", err)
	}
	if _, err := os.Lstat(plain); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("unmounted file not removed: %v", err)
	}
}
