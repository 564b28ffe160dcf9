package cgroups

import (
	"errors"
	"path"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestNormalizeParent(t *testing.T) {
	tests := []struct {
		name    string
		parent  string
		driver  string
		want    string
		wantErr error
	}{
		{name: "cgroupfs path", parent: "/kubepods/burstable/pod123", driver: DriverCgroupfs, want: "/kubepods/burstable/pod123"},
		{name: "cgroupfs path is cleaned", parent: "/kubepods//besteffort/./pod1/", driver: DriverCgroupfs, want: "/kubepods/besteffort/pod1"},
		{name: "empty gives berth default", parent: "", driver: DriverCgroupfs, want: "/berth"},
		{name: "empty under systemd", parent: "", driver: DriverSystemd, want: "/berth.slice"},
		{name: "slice expanded", parent: "kubepods-burstable-podabc.slice", driver: DriverSystemd, want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-podabc.slice"},
		{name: "top slice", parent: "kubepods.slice", driver: DriverSystemd, want: "/kubepods.slice"},
		{name: "slice refused under cgroupfs", parent: "kubepods-burstable-podabc.slice", driver: DriverCgroupfs, wantErr: errdefs.ErrInvalidArgument},
		{name: "slice under systemd", parent: "kubepods-besteffort-pod1.slice", driver: DriverSystemd, want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice"},
		{name: "slice with underscores from pod uid", parent: "kubepods-pod1a2b_3c4d.slice", driver: DriverSystemd, want: "/kubepods.slice/kubepods-pod1a2b_3c4d.slice"},
		{name: "relative refused", parent: "kubepods/pod1", driver: DriverCgroupfs, wantErr: errdefs.ErrInvalidArgument},
		{name: "dotdot refused", parent: "/kubepods/../../etc", driver: DriverCgroupfs, wantErr: errdefs.ErrInvalidArgument},
		{name: "trailing dotdot refused", parent: "/kubepods/..", driver: DriverCgroupfs, wantErr: errdefs.ErrInvalidArgument},
		{name: "root refused", parent: "/", driver: DriverCgroupfs, wantErr: errdefs.ErrInvalidArgument},
		{name: "root slice refused", parent: "-.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "double dash slice refused", parent: "kubepods--pod.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "leading dash slice refused", parent: "-kubepods.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "trailing dash slice refused", parent: "kubepods-.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "dotdot slice part refused", parent: "kubepods-...slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "systemd wants a slice", parent: "/kubepods/pod1", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		// The kubelet's ToSystemd sends the expanded path of the pod's slice.
		{name: "slice path as the kubelet sends it", parent: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b_3c4d.slice", driver: DriverSystemd,
			want: "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1a2b_3c4d.slice"},
		{name: "top slice path", parent: "/kubepods.slice", driver: DriverSystemd, want: "/kubepods.slice"},
		{name: "slice path not where systemd puts it", parent: "/kubepods.slice/other.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "slice path with a missing level", parent: "/kubepods.slice/kubepods-burstable-pod1.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "slice path below a directory", parent: "/kubepods/kubepods-pod1.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "relative slice path", parent: "kubepods.slice/kubepods-pod1.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "slice path with dotdot", parent: "/kubepods.slice/../kubepods.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "systemd refuses dotdot", parent: "../x.slice", driver: DriverSystemd, wantErr: errdefs.ErrInvalidArgument},
		{name: "unknown driver", parent: "/kubepods", driver: "lxcfs", wantErr: errdefs.ErrInvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := NormalizeParent(tt.parent, tt.driver)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("NormalizeParent(%q, %q) = %q, %v; want error %v", tt.parent, tt.driver, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("NormalizeParent(%q, %q) = %q, %v; want %q", tt.parent, tt.driver, got, err, tt.want)
			}
		})
	}
}

func TestContainerPath(t *testing.T) {
	tests := []struct {
		name, pod, id, want string
	}{
		{name: "plain", pod: "/kubepods/pod1", id: "abc", want: "/kubepods/pod1/abc"},
		{name: "trailing slash", pod: "/berth/", id: "abc", want: "/berth/abc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ContainerPath(tt.pod, tt.id); got != tt.want {
				t.Fatalf("ContainerPath(%q, %q) = %q, want %q", tt.pod, tt.id, got, tt.want)
			}
		})
	}
}

func TestNormalizeParentNamesTheSetting(t *testing.T) {
	for _, tt := range []struct{ parent, driver string }{
		{"kubepods-pod1.slice", DriverCgroupfs},
		{"/kubepods/pod1", DriverSystemd},
		{"/kubepods", "lxcfs"},
	} {
		_, err := NormalizeParent(tt.parent, tt.driver)
		if err == nil || !strings.Contains(err.Error(), "cgroup_driver") || !strings.Contains(err.Error(), tt.parent) {
			t.Errorf("NormalizeParent(%q, %q) = %v, want an error naming the parent and cgroup_driver", tt.parent, tt.driver, err)
		}
	}
}

func TestPodPath(t *testing.T) {
	tests := []struct {
		name, parent, driver, want string
	}{
		{name: "cgroupfs", parent: "/berth", driver: DriverCgroupfs, want: "/berth/abc"},
		{name: "systemd default slice", parent: "/berth.slice", driver: DriverSystemd, want: "/berth.slice/berth-abc.slice"},
		{name: "systemd nested slice", parent: "/kubepods.slice/kubepods-besteffort.slice", driver: DriverSystemd,
			want: "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-abc.slice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := PodPath(tt.parent, tt.driver, "abc")
			if got != tt.want {
				t.Fatalf("PodPath(%q, %q) = %q, want %q", tt.parent, tt.driver, got, tt.want)
			}
			if tt.driver != DriverSystemd {
				return
			}
			// systemd places a slice by its name alone: the path must be where it puts it.
			if want, err := expandSlice(path.Base(got)); err != nil || want != got {
				t.Fatalf("systemd puts %s at %q (%v), not %q", path.Base(got), want, err, got)
			}
		})
	}
}
