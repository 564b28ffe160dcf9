package runtime

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

// newUserNSHolder starts a process in new user, net, ipc and uts namespaces
// with container root mapped to host id 100000, as the agent's holder does,
// and returns its pid; it ends with the test.
func newUserNSHolder(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("cat")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:                 unix.CLONE_NEWUSER | unix.CLONE_NEWNET | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS,
		UidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings:                []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappingsEnableSetgroups: true,
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start user namespace holder: %v", err)
	}
	t.Cleanup(func() {
		stdin.Close()
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd.Process.Pid
}

func nsLink(t *testing.T, pid int, kind string) string {
	t.Helper()
	l, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/" + kind)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// statusField returns a line's value from /proc/<pid>/status.
func statusField(t *testing.T, pid int, field string) string {
	t.Helper()
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			return strings.Join(strings.Fields(v), " ")
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return ""
}

func TestPodInitUserNamespace(t *testing.T) {
	e := newTestManager(t)
	holder := newUserNSHolder(t)
	ns := func(kind string) string { return "/proc/" + strconv.Itoa(holder) + "/ns/" + kind }
	pid, err := e.m.StartPodInit(PodInitOptions{
		UserNS: ns("user"), NetNS: ns("net"), IPCNS: ns("ipc"), UTSNS: ns("uts"),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{"user", "net", "ipc", "uts"} {
		if got, want := nsLink(t, pid, kind), nsLink(t, holder, kind); got != want {
			t.Errorf("pod init %s namespace = %s, want the pod's %s", kind, got, want)
		}
	}
	if nsLink(t, pid, "pid") == nsLink(t, os.Getpid(), "pid") {
		t.Error("pod init shares the shim's pid namespace")
	}
	// PID 1 of its namespace, root of the user namespace (host id 100000).
	if got := statusField(t, pid, "NSpid"); got != strconv.Itoa(pid)+" 1" {
		t.Errorf("NSpid = %q, want %d 1", got, pid)
	}
	if got := statusField(t, pid, "Uid"); got != "100000 100000 100000 100000" {
		t.Errorf("Uid = %q, want 100000 throughout", got)
	}
	// The pid namespace belongs to the pod's user namespace: that is what
	// lets a container of the pod mount proc.
	fd, err := unix.Open("/proc/"+strconv.Itoa(pid)+"/ns/pid", unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	owner, err := unix.IoctlRetInt(fd, unix.NS_GET_USERNS)
	unix.Close(fd)
	if err != nil {
		t.Fatalf("NS_GET_USERNS: %v", err)
	}
	var got, want unix.Stat_t
	_ = unix.Fstat(owner, &got)
	unix.Close(owner)
	if err := unix.Stat(ns("user"), &want); err != nil {
		t.Fatal(err)
	}
	if got.Ino != want.Ino {
		t.Errorf("pid namespace owner inode %d, want the pod user namespace %d", got.Ino, want.Ino)
	}

	e.m.StopPodInit()
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("pod init %d still alive after StopPodInit", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestPodInitUserNamespaceMissing(t *testing.T) {
	e := newTestManager(t)
	if _, err := e.m.StartPodInit(PodInitOptions{UserNS: "/nonexistent/user"}); err == nil {
		t.Fatal("StartPodInit with a missing user namespace succeeded")
	}
	// A path that is not a user namespace: the constructor's setns fails and
	// its error comes back.
	_, err := e.m.StartPodInit(PodInitOptions{UserNS: "/proc/self/ns/net"})
	if err == nil || !strings.Contains(err.Error(), "join user namespace") {
		t.Fatalf("StartPodInit with a net namespace as user namespace: %v", err)
	}
}

func TestParsePodInitReport(t *testing.T) {
	tests := []struct {
		name, report string
		pid          int
		wantErr      bool
	}{
		{"pid", "pid 42\n", 42, false},
		{"error", "error join user namespace: Invalid argument\n", 0, true},
		{"empty", "", 0, true},
		{"garbage", "pid x", 0, true},
		{"zero", "pid 0", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pid, err := parsePodInitReport(tt.report)
			if pid != tt.pid || (err != nil) != tt.wantErr {
				t.Errorf("parsePodInitReport(%q) = %d, %v", tt.report, pid, err)
			}
		})
	}
}

// A user-namespaced pod init is born in its pod cgroup: package podns's constructor joins it
// before the fork (the shim's join afterwards is a no-op), and a cgroup already gone fails
// the start instead of leaving an init outside the pod.
func TestPodInitUserNamespaceJoinsItsOwnCgroup(t *testing.T) {
	e := newTestManager(t)
	holder := newUserNSHolder(t)
	ns := func(kind string) string { return "/proc/" + strconv.Itoa(holder) + "/ns/" + kind }
	cg := runtimetest.CgroupPath(t, "podinit-userns-"+strconv.Itoa(os.Getpid()))
	dirs := runtimetest.CgroupDirs(t, cg)
	if err := ensureCgroup(cg); err != nil {
		t.Fatal(err)
	}
	// startInUserNS alone: no joinCgroup from the shim's side.
	pi, err := e.m.startInUserNS(PodInitOptions{UserNS: ns("user"), NetNS: ns("net"), CgroupPath: cg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pi.signal(syscall.SIGKILL); <-pi.done })
	// dirs[0] is the first hierarchy (v1: a controller, v2: the unified one); the others are
	// checked where the hierarchy is mounted for controllers (not v1's name=systemd/unified).
	for i, dir := range dirs {
		procs, err := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
		if i > 0 && os.IsNotExist(err) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(strings.Fields(string(procs)), strconv.Itoa(pi.pid)) {
			t.Errorf("pod init %d not in %s right after its start (procs %q)", pi.pid, dir, procs)
		}
	}

	_, err = e.m.startInUserNS(PodInitOptions{UserNS: ns("user"), CgroupPath: cg + "-gone"})
	if err == nil || !strings.Contains(err.Error(), "join pod cgroup") {
		t.Errorf("start with a cgroup already gone: %v, want the join to fail", err)
	}
}
