package cgroups

import (
	"errors"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestScopeNames(t *testing.T) {
	pod := "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1.slice"
	if got, want := ScopePath(pod, ContainerScopePrefix, "c1"), pod+"/berth-c1.scope"; got != want {
		t.Errorf("ScopePath = %q, want %q", got, want)
	}
	if got, want := RuncScopePath(pod, PodInitScopePrefix, "s1"), "kubepods-burstable-pod1.slice:berth-podinit:s1"; got != want {
		t.Errorf("RuncScopePath = %q, want %q", got, want)
	}
	if got, want := ShimScopePath("s1"), "/berth.slice/berth-shims.slice/berth-shim-s1.scope"; got != want {
		t.Errorf("ShimScopePath = %q, want %q", got, want)
	}
}

func TestIsUnitPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/berth.slice/berth-abc.slice":         true,
		"/berth.slice/berth-abc.slice/x.scope": true,
		"/berth/abc":                           false,
		"/berth/abc/pod-init":                  false,
		"/kubepods/burstable/pod1/slice":       false,
	} {
		if got := IsUnitPath(p); got != want {
			t.Errorf("IsUnitPath(%q) = %v, want %v", p, got, want)
		}
	}
}

func TestSplitSlicePath(t *testing.T) {
	tests := []struct {
		name, path, wantName, wantParent string
		wantErr                          bool
	}{
		{name: "top", path: "/berth.slice", wantName: "berth.slice", wantParent: "-.slice"},
		{name: "nested", path: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice",
			wantName: "kubepods-besteffort-pod1.slice", wantParent: "kubepods-besteffort.slice"},
		{name: "misplaced", path: "/kubepods.slice/other-pod1.slice", wantErr: true},
		{name: "a scope", path: "/berth.slice/berth-1.scope", wantErr: true},
		{name: "a directory", path: "/berth/abc", wantErr: true},
		{name: "dotdot", path: "/berth.slice/../x.slice", wantErr: true},
		{name: "relative", path: "berth.slice", wantErr: true},
		{name: "root", path: "/", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name, parent, err := splitSlicePath(tt.path)
			if tt.wantErr {
				if !errors.Is(err, errdefs.ErrInvalidArgument) {
					t.Fatalf("splitSlicePath(%q) = %q, %q, %v; want InvalidArgument", tt.path, name, parent, err)
				}
				return
			}
			if err != nil || name != tt.wantName || parent != tt.wantParent {
				t.Fatalf("splitSlicePath(%q) = %q, %q, %v; want %q, %q", tt.path, name, parent, err, tt.wantName, tt.wantParent)
			}
		})
	}
}

// TestRemoveUnitRefusesNonUnits: a cgroupfs directory is never handed to systemd, and the
// refusal happens before any D-Bus call (a nil connection would panic).
func TestRemoveUnitRefusesNonUnits(t *testing.T) {
	s := &Systemd{}
	for _, p := range []string{"/berth/abc", "/", "relative.scope", "/a/../b.scope"} {
		if err := s.RemoveUnit(t.Context(), p); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("RemoveUnit(%q) = %v, want InvalidArgument", p, err)
		}
	}
}

// TestConnectSystemdWithoutSystemd: where nothing answers on D-Bus, the systemd driver fails
// at startup with an error that names the setting and is classified Unavailable.
func TestConnectSystemdWithoutSystemd(t *testing.T) {
	if systemdBooted() {
		t.Skip("systemd is PID 1 here")
	}
	sd, err := ConnectSystemd(t.Context())
	if err == nil {
		sd.Close()
		t.Fatal("ConnectSystemd succeeded without systemd")
	}
	if !errors.Is(err, errdefs.ErrUnavailable) || !strings.Contains(err.Error(), "cgroup_driver") {
		t.Fatalf("ConnectSystemd = %v, want Unavailable naming cgroup_driver", err)
	}
}
