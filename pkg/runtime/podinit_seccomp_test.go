package runtime

import (
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/runtime/runtimetest"
)

func defaultSeccomp(t *testing.T) *specs.LinuxSeccomp {
	t.Helper()
	sp, err := mobyseccomp.GetDefaultProfile(&specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{}}})
	if err != nil {
		t.Fatal(err)
	}
	return sp
}

// stopsOnTerm checks the filtered init still does its job: it exits on SIGTERM.
func stopsOnTerm(t *testing.T, e *testEnv, pid int) {
	t.Helper()
	e.m.StopPodInit()
	deadline := time.Now().Add(5 * time.Second)
	for unix.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("pod init %d still alive after StopPodInit", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestPodInitSeccomp: the pod's filter binds the init (Seccomp: 2 is filter mode), in its
// cgroup, and on every thread of it.
func TestPodInitSeccomp(t *testing.T) {
	e := newTestManager(t)
	cg := runtimetest.CgroupPath(t, "scpod-"+strconv.Itoa(os.Getpid()))
	pid, err := e.m.StartPodInit(PodInitOptions{CgroupPath: cg, Seccomp: defaultSeccomp(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.m.StopPodInit)
	if got := statusField(t, pid, "Seccomp"); got != "2" {
		t.Errorf("pod init Seccomp = %s, want 2 (filter)", got)
	}
	tasks, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		if got := statusField(t, tid, "Seccomp"); got != "2" {
			t.Errorf("pod init thread %d Seccomp = %s, want 2", tid, got)
		}
	}
	if env, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ"); err != nil || strings.Contains(string(env), podInitSeccompEnv+"=") {
		t.Errorf("re-executed pod init environment = %q (%v), want no filter left in it", env, err)
	}
	stopsOnTerm(t, e, pid)
}

func TestPodInitSeccompUserNamespace(t *testing.T) {
	e := newTestManager(t)
	holder := newUserNSHolder(t)
	ns := func(kind string) string { return "/proc/" + strconv.Itoa(holder) + "/ns/" + kind }
	pid, err := e.m.StartPodInit(PodInitOptions{
		UserNS: ns("user"), NetNS: ns("net"), IPCNS: ns("ipc"), UTSNS: ns("uts"), Seccomp: defaultSeccomp(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.m.StopPodInit)
	if got := statusField(t, pid, "Seccomp"); got != "2" {
		t.Errorf("pod init Seccomp = %s, want 2 (filter)", got)
	}
	stopsOnTerm(t, e, pid)
}

func TestPodInitSeccompInvalid(t *testing.T) {
	e := newTestManager(t)
	bad := &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_BOGUS"}
	if _, err := e.m.StartPodInit(PodInitOptions{Seccomp: bad}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("StartPodInit with an invalid filter: err = %v, want InvalidArgument", err)
	}
	notify := &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"mkdir"}, Action: specs.ActNotify}}}
	if _, err := e.m.StartPodInit(PodInitOptions{Seccomp: notify}); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("StartPodInit with a notify filter: err = %v, want InvalidArgument", err)
	}
}
