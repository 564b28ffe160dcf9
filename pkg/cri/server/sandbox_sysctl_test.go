package server

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestRunPodSandboxBadSysctl: a namespaced-looking sysctl the kernel does not have, or a
// sysctl directory, is the caller's mistake: InvalidArgument naming the sysctl, and the
// failed pod leaves nothing behind. Found by FuzzCRI (it was Unknown).
func TestRunPodSandboxBadSysctl(t *testing.T) {
	tests := []struct {
		name, sysctl string
	}{
		{name: "no such sysctl", sysctl: "net.ipv4.no_such_knob"},
		{name: "no such sysctl directory", sysctl: "net.nosuch.x"},
		{name: "a directory, not a sysctl", sysctl: "net.ipv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			if err := os.MkdirAll(filepath.Join(e.procSys, "net/ipv4"), 0o755); err != nil {
				t.Fatal(err)
			}
			_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{
				Config: podConfig("p", withSysctls(map[string]string{tt.sysctl: "1"})),
			})
			if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tt.sysctl) {
				t.Fatalf("RunPodSandbox = %v, want InvalidArgument naming %s", err, tt.sysctl)
			}
			e.assertNothingLeft(t)
		})
	}
}

func TestClassifySysctlErr(t *testing.T) {
	tests := []struct {
		name    string
		errno   syscall.Errno
		invalid bool
	}{
		{name: "no such sysctl", errno: syscall.ENOENT, invalid: true},
		{name: "sysctl directory", errno: syscall.EISDIR, invalid: true},
		{name: "read-only sysctl", errno: syscall.EACCES, invalid: true},
		{name: "bad value", errno: syscall.EINVAL, invalid: true},
		{name: "value out of range", errno: syscall.ERANGE, invalid: true},
		{name: "node refuses", errno: syscall.EPERM},
		{name: "i/o error", errno: syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := &os.PathError{Op: "write", Path: "/proc/sys/x", Err: tt.errno}
			err := classifySysctlErr(in)
			if got := errdefs.IsInvalidArgument(err); got != tt.invalid {
				t.Fatalf("classifySysctlErr(%v) invalid argument = %v, want %v", in, got, tt.invalid)
			}
			if !errors.Is(err, tt.errno) {
				t.Fatalf("classifySysctlErr(%v) = %v lost the errno", in, err)
			}
		})
	}
}
