package spec

import (
	"slices"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func findMount(mounts []specs.Mount, dst string) (specs.Mount, int) {
	for i, m := range mounts {
		if m.Destination == dst {
			return m, i
		}
	}
	return specs.Mount{}, -1
}

func TestCRIMount(t *testing.T) {
	priv, h2c, bidi := runtimeapi.MountPropagation_PROPAGATION_PRIVATE, runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER, runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL
	img := &runtimeapi.ImageSpec{Image: "sha256:1234"}
	tests := []struct {
		name string
		m    *runtimeapi.Mount
		want []string
		err  error
	}{
		{name: "private rw", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Propagation: priv}, want: []string{"rbind", "rprivate", "rw"}},
		{name: "readonly", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Readonly: true}, want: []string{"rbind", "rprivate", "ro"}},
		{name: "host to container", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Propagation: h2c}, want: []string{"rbind", "rslave", "rw"}},
		{name: "bidirectional", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Propagation: bidi}, want: []string{"rbind", "rshared", "rw"}},
		{name: "selinux relabel ignored", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", SelinuxRelabel: true}, want: []string{"rbind", "rprivate", "rw"}},
		{name: "recursive read-only", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Readonly: true, RecursiveReadOnly: true}, want: []string{"rbind", "rprivate", "ro", "rro"}},
		{name: "rro needs readonly", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", RecursiveReadOnly: true}, err: errInvalid},
		{name: "rro needs private", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Readonly: true, RecursiveReadOnly: true, Propagation: h2c}, err: errInvalid},
		{name: "mount options", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", MountOptions: []string{"noexec", "nosuid", "noexec"}}, want: []string{"rbind", "rprivate", "rw", "noexec", "nosuid"}},
		{name: "mount option rw refused", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Readonly: true, MountOptions: []string{"rw"}}, err: errInvalid},
		{name: "relative container path", m: &runtimeapi.Mount{ContainerPath: "data", HostPath: "/h"}, err: errInvalid},
		{name: "root container path", m: &runtimeapi.Mount{ContainerPath: "/", HostPath: "/h"}, err: errInvalid},
		{name: "no host path", m: &runtimeapi.Mount{ContainerPath: "/data"}, err: errInvalid},
		{name: "image volume", m: &runtimeapi.Mount{ContainerPath: "/data/", Readonly: true, Image: img}, want: []string{"rbind", "rprivate", "ro"}},
		{name: "image volume with options", m: &runtimeapi.Mount{ContainerPath: "/data", Readonly: true, Image: img, MountOptions: []string{"nosuid"}}, want: []string{"rbind", "rprivate", "ro", "nosuid"}},
		{name: "image volume must be read-only", m: &runtimeapi.Mount{ContainerPath: "/data", Image: img}, err: errInvalid},
		{name: "image volume private only", m: &runtimeapi.Mount{ContainerPath: "/data", Readonly: true, Image: img, Propagation: h2c}, err: errInvalid},
		{name: "image sub path escaping", m: &runtimeapi.Mount{ContainerPath: "/data", Readonly: true, Image: img, ImageSubPath: "etc/../../x"}, err: errInvalid},
		{name: "image sub path absolute", m: &runtimeapi.Mount{ContainerPath: "/data", Readonly: true, Image: img, ImageSubPath: "/etc"}, err: errInvalid},
		{name: "image volume not prepared", m: &runtimeapi.Mount{ContainerPath: "/other", Readonly: true, Image: img}, err: errdefs.ErrFailedPrecondition},
		{name: "unknown propagation", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", Propagation: 7}, err: errInvalid},
		{name: "id mapped needs gid mappings too", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", UidMappings: []*runtimeapi.IDMapping{{HostId: 1, Length: 1}}}, err: errInvalid},
		{name: "id mapping of length 0", m: &runtimeapi.Mount{ContainerPath: "/data", HostPath: "/h", UidMappings: []*runtimeapi.IDMapping{{HostId: 1}}, GidMappings: []*runtimeapi.IDMapping{{HostId: 1}}}, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := criMount(tt.m, map[string]string{"/data": "/h"})
			wantErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if got.Type != "bind" || got.Source != "/h" || got.Destination != tt.m.ContainerPath || !slices.Equal(got.Options, tt.want) {
				t.Fatalf("got %+v, want options %q", got, tt.want)
			}
		})
	}
}

func TestMountsDefaultsAndSandboxFiles(t *testing.T) {
	sb := SandboxInfo{HostsPath: "/run/sb/hosts", HostnamePath: "/run/sb/hostname", ResolvPath: "/run/sb/resolv.conf", ShmPath: "/run/sb/shm"}
	mounts, prop, err := Mounts(&runtimeapi.ContainerConfig{}, sb, false, nil)
	wantErr(t, err, nil)
	if prop != "" {
		t.Fatalf("rootfs propagation %q, want none", prop)
	}
	for dst, src := range map[string]string{"/etc/hosts": sb.HostsPath, "/etc/hostname": sb.HostnamePath, "/etc/resolv.conf": sb.ResolvPath, "/dev/shm": sb.ShmPath} {
		m, i := findMount(mounts, dst)
		if i < 0 || m.Source != src || m.Type != "bind" || !slices.Contains(m.Options, "rw") {
			t.Errorf("%s: got %+v", dst, m)
		}
	}
	for _, dst := range []string{"/proc", "/dev", "/dev/pts", "/dev/mqueue", "/sys", "/sys/fs/cgroup"} {
		if _, i := findMount(mounts, dst); i < 0 {
			t.Errorf("default mount %s missing", dst)
		}
	}
	sys, _ := findMount(mounts, "/sys")
	cg, _ := findMount(mounts, "/sys/fs/cgroup")
	if !slices.Contains(sys.Options, "ro") || !slices.Contains(cg.Options, "ro") || cg.Type != "cgroup" {
		t.Errorf("/sys and /sys/fs/cgroup must be read-only: %+v %+v", sys, cg)
	}
	if n := countDst(mounts, "/dev/shm"); n != 1 {
		t.Errorf("/dev/shm mounted %d times", n)
	}
}

func countDst(mounts []specs.Mount, dst string) int {
	n := 0
	for _, m := range mounts {
		if m.Destination == dst {
			n++
		}
	}
	return n
}

func TestMountsShmTmpfsWithoutSandboxShm(t *testing.T) {
	mounts, _, err := Mounts(&runtimeapi.ContainerConfig{}, SandboxInfo{}, false, nil)
	wantErr(t, err, nil)
	m, i := findMount(mounts, "/dev/shm")
	if i < 0 || m.Type != "tmpfs" {
		t.Fatalf("/dev/shm: %+v", m)
	}
	for _, dst := range []string{"/etc/hosts", "/etc/hostname", "/etc/resolv.conf"} {
		if _, i := findMount(mounts, dst); i >= 0 {
			t.Errorf("%s mounted without a sandbox file", dst)
		}
	}
}

func TestMountsReadonlyRootfsMakesEtcFilesReadonly(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{ReadonlyRootfs: true}}}
	mounts, _, err := Mounts(cfg, SandboxInfo{HostsPath: "/h", ShmPath: "/s"}, false, nil)
	wantErr(t, err, nil)
	if m, _ := findMount(mounts, "/etc/hosts"); !slices.Contains(m.Options, "ro") {
		t.Errorf("/etc/hosts: %+v", m)
	}
	// /dev/shm stays writable: it is shared memory, not part of the rootfs.
	if m, _ := findMount(mounts, "/dev/shm"); !slices.Contains(m.Options, "rw") {
		t.Errorf("/dev/shm: %+v", m)
	}
}

func TestMountsCRIOverrides(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/etc/hosts", HostPath: "/my/hosts"},
		{ContainerPath: "/dev/shm/", HostPath: "/my/shm"},
		{ContainerPath: "/sys", HostPath: "/sys"},
	}}
	mounts, _, err := Mounts(cfg, SandboxInfo{HostsPath: "/sb/hosts", ShmPath: "/sb/shm"}, false, nil)
	wantErr(t, err, nil)
	for dst, src := range map[string]string{"/etc/hosts": "/my/hosts", "/dev/shm": "/my/shm", "/sys": "/sys"} {
		if n := countDst(mounts, dst); n != 1 {
			t.Errorf("%s mounted %d times", dst, n)
		}
		if m, _ := findMount(mounts, dst); m.Source != src || m.Type != "bind" {
			t.Errorf("%s: got %+v", dst, m)
		}
	}
}

func TestMountsDevReplacesDevSubmounts(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/dev", HostPath: "/dev"}}}
	mounts, _, err := Mounts(cfg, SandboxInfo{ShmPath: "/sb/shm"}, false, nil)
	wantErr(t, err, nil)
	for _, dst := range []string{"/dev/pts", "/dev/mqueue"} {
		if _, i := findMount(mounts, dst); i >= 0 {
			t.Errorf("%s kept under a CRI /dev mount", dst)
		}
	}
	// The sandbox's /dev/shm still goes on top of the host /dev.
	if m, i := findMount(mounts, "/dev/shm"); i < 0 || m.Source != "/sb/shm" {
		t.Errorf("/dev/shm: %+v", m)
	}
}

func TestMountsOrderParentsFirst(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{
		{ContainerPath: "/a/b/c", HostPath: "/h3"},
		{ContainerPath: "/a/b", HostPath: "/h2"},
		{ContainerPath: "/a", HostPath: "/h1"},
		{ContainerPath: "/x", HostPath: "/h4"},
	}}
	mounts, _, err := Mounts(cfg, SandboxInfo{}, false, nil)
	wantErr(t, err, nil)
	index := func(dst string) int { _, i := findMount(mounts, dst); return i }
	pairs := [][2]string{{"/a", "/a/b"}, {"/a/b", "/a/b/c"}, {"/dev", "/dev/pts"}, {"/sys", "/sys/fs/cgroup"}, {"/proc", "/dev"}}
	for _, p := range pairs {
		if index(p[0]) < 0 || index(p[1]) < 0 || index(p[0]) > index(p[1]) {
			t.Errorf("%s (at %d) must come before %s (at %d)", p[0], index(p[0]), p[1], index(p[1]))
		}
	}
	// Stable: same-depth CRI mounts keep the request order.
	if index("/a") > index("/x") {
		t.Errorf("/a should stay before /x")
	}
}

func TestMountsRootfsPropagation(t *testing.T) {
	h2c := &runtimeapi.Mount{ContainerPath: "/s", HostPath: "/h", Propagation: runtimeapi.MountPropagation_PROPAGATION_HOST_TO_CONTAINER}
	bidi := &runtimeapi.Mount{ContainerPath: "/b", HostPath: "/h", Propagation: runtimeapi.MountPropagation_PROPAGATION_BIDIRECTIONAL}
	tests := []struct {
		name   string
		mounts []*runtimeapi.Mount
		want   string
	}{
		{name: "none", want: ""},
		{name: "host to container", mounts: []*runtimeapi.Mount{h2c}, want: "rslave"},
		{name: "bidirectional", mounts: []*runtimeapi.Mount{bidi}, want: "rshared"},
		{name: "shared wins either order", mounts: []*runtimeapi.Mount{bidi, h2c}, want: "rshared"},
		{name: "shared wins", mounts: []*runtimeapi.Mount{h2c, bidi}, want: "rshared"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, got, err := Mounts(&runtimeapi.ContainerConfig{Mounts: tt.mounts}, SandboxInfo{}, false, nil)
			wantErr(t, err, nil)
			if got != tt.want {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMountsPrivilegedSysWritable(t *testing.T) {
	mounts, _, err := Mounts(&runtimeapi.ContainerConfig{}, SandboxInfo{}, true, nil)
	wantErr(t, err, nil)
	for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
		m, _ := findMount(mounts, dst)
		if slices.Contains(m.Options, "ro") || !slices.Contains(m.Options, "rw") {
			t.Errorf("%s: %+v", dst, m)
		}
	}
}

func TestMountsInvalidCRIMount(t *testing.T) {
	cfg := &runtimeapi.ContainerConfig{Mounts: []*runtimeapi.Mount{{ContainerPath: "/d", HostPath: "/h", RecursiveReadOnly: true}}}
	_, _, err := Mounts(cfg, SandboxInfo{}, false, nil)
	wantErr(t, err, errInvalid)
}

// TestGenerateAnonymousVolumes: anonymous volumes are read-write binds placed after their
// parents (runc mounts in list order).
func TestGenerateAnonymousVolumes(t *testing.T) {
	mounts := AnonymousVolumeMounts(map[string]string{"/var/lib/db": "/r/volumes/1", "/data": "/r/volumes/0"})
	if len(mounts) != 2 || mounts[0].Destination != "/data" || mounts[0].Source != "/r/volumes/0" ||
		mounts[0].Type != "bind" || slices.Contains(mounts[0].Options, "ro") {
		t.Fatalf("AnonymousVolumeMounts = %+v", mounts)
	}
	all := append([]specs.Mount{{Destination: "/var/lib/db"}}, specs.Mount{Destination: "/var"})
	sortByDepth(all)
	if all[0].Destination != "/var" {
		t.Errorf("sortByDepth = %v, want /var first", all)
	}
}
