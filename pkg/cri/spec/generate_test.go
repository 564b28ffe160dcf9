package spec

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type fakeUsers struct {
	user specs.User
	err  error
}

func (f fakeUsers) LookupUser(*runtimeapi.LinuxContainerSecurityContext, ImageConfig) (specs.User, error) {
	return f.user, f.err
}

func testSandbox() SandboxInfo {
	return SandboxInfo{
		ID: "sb1", Name: "web", Namespace: "default", UID: "uid-1", Hostname: "web-0",
		NetNSPath: "/run/berth/netns/sb1/net", IPCNSPath: "/run/berth/netns/sb1/ipc", UTSNSPath: "/run/berth/netns/sb1/uts",
		PIDNSPath:    "/proc/100/ns/pid",
		HostsPath:    "/run/berth/sandboxes/sb1/hosts",
		HostnamePath: "/run/berth/sandboxes/sb1/hostname",
		ResolvPath:   "/run/berth/sandboxes/sb1/resolv.conf",
		ShmPath:      "/run/berth/sandboxes/sb1/shm",
		Sysctls:      map[string]string{"net.ipv4.ip_unprivileged_port_start": "0"},
	}
}

func testConfig(mutate ...func(*runtimeapi.ContainerConfig)) *runtimeapi.ContainerConfig {
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: "app"},
		Image:    &runtimeapi.ImageSpec{Image: "docker.io/library/busybox:latest"},
		Linux: &runtimeapi.LinuxContainerConfig{
			Resources:       &runtimeapi.LinuxContainerResources{CpuShares: 2, OomScoreAdj: 1000},
			SecurityContext: &runtimeapi.LinuxContainerSecurityContext{NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER}},
		},
	}
	for _, m := range mutate {
		m(cfg)
	}
	return cfg
}

func testOptions() Options {
	return Options{
		CgroupsPath: "/berth/pod-sb1/c1",
		PidsLimit:   4096,
		Users:       fakeUsers{user: specs.User{UID: 1000, GID: 1000, AdditionalGids: []uint32{1000}}},
		Devices:     fakeDevices{"/dev": nil},
	}
}

var testImage = ImageConfig{Entrypoint: []string{"/bin/sh"}, Cmd: []string{"-c", "sleep 1"}, Env: []string{"IMG=1"}, WorkingDir: "/srv"}

func TestGenerate(t *testing.T) {
	s, err := Generate("c1", testConfig(), testSandbox(), testImage, testOptions())
	wantErr(t, err, nil)

	if s.Version != specs.Version || s.Root.Path != "rootfs" || s.Root.Readonly {
		t.Errorf("root: %+v version %s", s.Root, s.Version)
	}
	p := s.Process
	if !slices.Equal(p.Args, []string{"/bin/sh", "-c", "sleep 1"}) || p.Cwd != "/srv" || p.Terminal {
		t.Errorf("process: args %q cwd %q terminal %v", p.Args, p.Cwd, p.Terminal)
	}
	if !slices.Equal(p.Env, []string{"HOSTNAME=web-0", "IMG=1", "PATH=" + DefaultPath}) {
		t.Errorf("env: %q", p.Env)
	}
	if p.User.UID != 1000 || p.OOMScoreAdj == nil || *p.OOMScoreAdj != 1000 || p.NoNewPrivileges || len(p.Rlimits) != 0 {
		t.Errorf("process: %s", dump(p))
	}
	if !slices.Equal(p.Capabilities.Bounding, defaultCapabilities) {
		t.Errorf("caps: %v", p.Capabilities.Bounding)
	}
	l := s.Linux
	if l.CgroupsPath != "/berth/pod-sb1/c1" || *l.Resources.CPU.Shares != 2 || *l.Resources.Pids.Limit != 4096 {
		t.Errorf("cgroups: %s %s", l.CgroupsPath, dump(l.Resources))
	}
	if len(l.Resources.Devices) != 1 || l.Resources.Devices[0].Allow {
		t.Errorf("device rules should start (and here end) with deny-all: %s", dump(l.Resources.Devices))
	}
	if !slices.Equal(l.MaskedPaths, defaultMaskedPaths) || !slices.Equal(l.ReadonlyPaths, defaultReadonlyPaths) {
		t.Errorf("masked %v readonly %v", l.MaskedPaths, l.ReadonlyPaths)
	}
	if l.Seccomp != nil || p.ApparmorProfile != "" || p.SelinuxLabel != "" {
		t.Errorf("security profiles should be empty for now")
	}
	if l.Sysctl["net.ipv4.ip_unprivileged_port_start"] != "0" {
		t.Errorf("sysctls: %v", l.Sysctl)
	}
	if got := len(l.Namespaces); got != 5 {
		t.Errorf("namespaces: %+v", l.Namespaces)
	}
	if s.Hostname != "" {
		t.Errorf("hostname must come from the joined UTS namespace, got %q", s.Hostname)
	}
	wantAnn := map[string]string{
		AnnotationContainerType: "container", AnnotationContainerName: "app", AnnotationSandboxID: "sb1",
		AnnotationSandboxName: "web", AnnotationSandboxNamespace: "default", AnnotationSandboxUID: "uid-1",
		AnnotationImageName: "docker.io/library/busybox:latest",
	}
	if !maps.Equal(s.Annotations, wantAnn) {
		t.Errorf("annotations: %v", s.Annotations)
	}
	if _, i := findMount(s.Mounts, "/etc/resolv.conf"); i < 0 {
		t.Errorf("resolv.conf not mounted")
	}
	if _, err := json.Marshal(s); err != nil {
		t.Fatal(err)
	}
}

func TestGenerateDoesNotShareSandboxMaps(t *testing.T) {
	sb := testSandbox()
	s, err := Generate("c1", testConfig(), sb, testImage, testOptions())
	wantErr(t, err, nil)
	s.Linux.Sysctl["kernel.x"] = "1"
	if _, ok := sb.Sysctls["kernel.x"]; ok {
		t.Fatal("spec sysctls alias the sandbox's map")
	}
}

func TestGenerateWorkingDir(t *testing.T) {
	tests := []struct {
		name     string
		cri, img string
		want     string
	}{
		{name: "request wins", cri: "/work", img: "/srv", want: "/work"},
		{name: "image", img: "/srv", want: "/srv"},
		{name: "default", want: "/"},
		{name: "relative image dir", img: "app", want: "/app"},
		{name: "unclean", cri: "/a/../b/", want: "/b"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := testConfig(func(c *runtimeapi.ContainerConfig) { c.WorkingDir = tt.cri })
			img := testImage
			img.WorkingDir = tt.img
			s, err := Generate("c1", cfg, testSandbox(), img, testOptions())
			wantErr(t, err, nil)
			if s.Process.Cwd != tt.want {
				t.Fatalf("cwd %q, want %q", s.Process.Cwd, tt.want)
			}
		})
	}
}

func TestGenerateSecurityContext(t *testing.T) {
	sc := func(c *runtimeapi.ContainerConfig) *runtimeapi.LinuxContainerSecurityContext {
		return c.Linux.SecurityContext
	}
	privSandbox := testSandbox()
	privSandbox.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}

	t.Run("privileged", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
			sc(c).Privileged = true
			sc(c).MaskedPaths = []string{"/proc/kcore"}
			sc(c).Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/missing.json"}
			sc(c).Apparmor = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s"}
		})
		opts := testOptions()
		opts.Devices = fakeDevices{"/dev": {{Path: "/dev/sda", Type: "b", Major: 8}}}
		s, err := Generate("c1", cfg, privSandbox, testImage, opts)
		wantErr(t, err, nil)
		if !slices.Equal(s.Process.Capabilities.Bounding, allCapabilities) {
			t.Errorf("caps: %v", s.Process.Capabilities.Bounding)
		}
		if len(s.Linux.MaskedPaths) != 0 || len(s.Linux.ReadonlyPaths) != 0 {
			t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
		}
		for _, dst := range []string{"/sys", "/sys/fs/cgroup"} {
			if m, _ := findMount(s.Mounts, dst); !slices.Contains(m.Options, "rw") || slices.Contains(m.Options, "ro") {
				t.Errorf("%s: %+v", dst, m)
			}
		}
		if s.Linux.Seccomp != nil || s.Process.ApparmorProfile != "" {
			t.Errorf("privileged is confined: seccomp %v apparmor %q", s.Linux.Seccomp != nil, s.Process.ApparmorProfile)
		}
		if len(s.Linux.Devices) != 1 || s.Linux.Devices[0].Path != "/dev/sda" {
			t.Errorf("devices: %+v", s.Linux.Devices)
		}
		if r := s.Linux.Resources.Devices; len(r) != 1 || !r[0].Allow || r[0].Access != "rwm" {
			t.Errorf("device rules: %s", dump(r))
		}
	})

	t.Run("privileged container in unprivileged sandbox", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) { sc(c).Privileged = true })
		_, err := Generate("c1", cfg, testSandbox(), testImage, testOptions())
		wantErr(t, err, errInvalid)
	})

	t.Run("given masked and readonly paths", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
			sc(c).MaskedPaths = []string{"/proc/a"}
			sc(c).ReadonlyPaths = []string{"/proc/b"}
		})
		s, err := Generate("c1", cfg, testSandbox(), testImage, testOptions())
		wantErr(t, err, nil)
		if !slices.Equal(s.Linux.MaskedPaths, []string{"/proc/a"}) || !slices.Equal(s.Linux.ReadonlyPaths, []string{"/proc/b"}) {
			t.Errorf("masked %v readonly %v", s.Linux.MaskedPaths, s.Linux.ReadonlyPaths)
		}
	})

	t.Run("run_as_group with run_as_user", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
			sc(c).RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			sc(c).RunAsGroup = &runtimeapi.Int64Value{Value: 10}
		})
		_, err := Generate("c1", cfg, testSandbox(), testImage, testOptions())
		wantErr(t, err, nil)
	})

	t.Run("seccomp runtime default", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) { sc(c).Seccomp = &runtimeapi.SecurityProfile{} })
		s, err := Generate("c1", cfg, testSandbox(), testImage, testOptions())
		wantErr(t, err, nil)
		if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActErrno || len(s.Linux.Seccomp.Syscalls) == 0 {
			t.Errorf("seccomp: %+v", s.Linux.Seccomp)
		}
		if m, _ := findMount(s.Mounts, "/sys"); !slices.Contains(m.Options, "ro") {
			t.Errorf("/sys of an unprivileged container: %+v", m)
		}
	})

	t.Run("seccomp localhost from the injected loader", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) { sc(c).SeccompProfilePath = "localhost//p.json" })
		opts := testOptions()
		opts.SeccompProfiles = fakeProfiles{"/p.json": blockChmod}
		s, err := Generate("c1", cfg, testSandbox(), testImage, opts)
		wantErr(t, err, nil)
		if s.Linux.Seccomp == nil || s.Linux.Seccomp.DefaultAction != specs.ActAllow {
			t.Errorf("seccomp: %+v", s.Linux.Seccomp)
		}
		opts.SeccompProfiles = fakeProfiles{}
		_, err = Generate("c1", cfg, testSandbox(), testImage, opts)
		wantErr(t, err, errInvalid)
	})

	t.Run("apparmor localhost", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) { sc(c).ApparmorProfile = "localhost/k8s" })
		opts := testOptions()
		_, err := Generate("c1", cfg, testSandbox(), testImage, opts)
		wantErr(t, err, errInvalid)
		opts.AppArmor = AppArmorNode{Enabled: true, FS: t.TempDir()}
		if err := os.WriteFile(filepath.Join(opts.AppArmor.FS, "profiles"), []byte("k8s-old (enforce)\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err = Generate("c1", cfg, testSandbox(), testImage, opts)
		wantErr(t, err, errFailedPrecondition) // enabled, but k8s is not loaded
		if err := os.WriteFile(filepath.Join(opts.AppArmor.FS, "profiles"), []byte("k8s (enforce)\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Generate("c1", cfg, testSandbox(), testImage, opts)
		wantErr(t, err, nil)
		if s.Process.ApparmorProfile != "k8s" {
			t.Errorf("apparmor profile %q", s.Process.ApparmorProfile)
		}
	})

	t.Run("readonly rootfs, no_new_privs, tty", func(t *testing.T) {
		cfg := testConfig(func(c *runtimeapi.ContainerConfig) {
			sc(c).ReadonlyRootfs = true
			sc(c).NoNewPrivs = true
			c.Tty = true
		})
		s, err := Generate("c1", cfg, testSandbox(), testImage, testOptions())
		wantErr(t, err, nil)
		if !s.Root.Readonly || !s.Process.NoNewPrivileges || !s.Process.Terminal {
			t.Errorf("root %+v nnp %v terminal %v", s.Root, s.Process.NoNewPrivileges, s.Process.Terminal)
		}
	})
}

func TestGenerateErrors(t *testing.T) {
	tests := []struct {
		name string
		cfg  *runtimeapi.ContainerConfig
		img  ImageConfig
		opts func(*Options)
		err  error
	}{
		{name: "nil config", err: errInvalid},
		{name: "no command", cfg: testConfig(), img: ImageConfig{}, err: errInvalid},
		{name: "user lookup fails", cfg: testConfig(), img: testImage, opts: func(o *Options) { o.Users = fakeUsers{err: errInvalid} }, err: errInvalid},
		{name: "default users need an absolute rootfs", cfg: testConfig(), img: testImage, opts: func(o *Options) { o.Users = nil }, err: errInvalid},
		{name: "bad capability", cfg: testConfig(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"NOPE"}}
		}), img: testImage, err: errInvalid},
		{name: "bad mount", cfg: testConfig(func(c *runtimeapi.ContainerConfig) {
			c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/x", HostPath: "/y", RecursiveReadOnly: true}}
		}), img: testImage, err: errInvalid},
		{name: "run_as_group without a user", cfg: testConfig(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.RunAsGroup = &runtimeapi.Int64Value{Value: 10}
		}), img: testImage, err: errInvalid},
		{name: "unknown seccomp profile path", cfg: testConfig(func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext.SeccompProfilePath = "localhost//nonexistent/profile.json"
		}), img: testImage, err: errInvalid},
		{name: "bad resources", cfg: testConfig(func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.OomScoreAdj = -5000 }), img: testImage, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := testOptions()
			if tt.opts != nil {
				tt.opts(&opts)
			}
			_, err := Generate("c1", tt.cfg, testSandbox(), tt.img, opts)
			wantErr(t, err, tt.err)
			if !strings.Contains(err.Error(), "container c1") {
				t.Errorf("error should name the container: %v", err)
			}
		})
	}
}

func TestGenerateReadsRootfsUsers(t *testing.T) {
	root := writeRootfs(t, map[string]string{"etc/passwd": testPasswd, "etc/group": testGroup})
	opts := testOptions()
	opts.Users = nil
	opts.RootfsPath = root
	img := testImage
	img.User = "bob"
	s, err := Generate("c1", testConfig(), testSandbox(), img, opts)
	wantErr(t, err, nil)
	if s.Process.User.UID != 1001 || !slices.Equal(s.Process.User.AdditionalGids, []uint32{1001, 29, 44}) || s.Root.Path != root {
		t.Fatalf("user %+v root %s", s.Process.User, s.Root.Path)
	}
}

func TestGenerateCgroupsPath(t *testing.T) {
	tests := []struct {
		name, parent, given, want string
	}{
		{name: "given wins", parent: "/berth/pod", given: "/x/y", want: "/x/y"},
		{name: "derived from the pod cgroup", parent: "/berth/pod", want: "/berth/pod/c1"},
		{name: "none", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := testSandbox()
			sb.CgroupParent = tt.parent
			opts := testOptions()
			opts.CgroupsPath = tt.given
			s, err := Generate("c1", testConfig(), sb, testImage, opts)
			wantErr(t, err, nil)
			if s.Linux.CgroupsPath != tt.want {
				t.Fatalf("got %q, want %q", s.Linux.CgroupsPath, tt.want)
			}
		})
	}
}
