package spec

import (
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func idmap(ctr, host, n uint32) []*runtimeapi.IDMapping {
	return []*runtimeapi.IDMapping{{ContainerId: ctr, HostId: host, Length: n}}
}

func podUserns(ids []*runtimeapi.IDMapping) *runtimeapi.UserNamespace {
	return &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: ids, Gids: ids}
}

func TestUserNamespace(t *testing.T) {
	two := append(idmap(0, 1000, 100000), idmap(0, 2000, 100000)...)
	tests := []struct {
		name string
		u    *runtimeapi.UserNamespace
		want []specs.LinuxIDMapping
		err  error
	}{
		{name: "absent is the host's"},
		{name: "node", u: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE}},
		{name: "pod", u: podUserns(idmap(0, 65536, 65536)), want: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 65536, Size: 65536}}},
		{name: "pod without mappings", u: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD}, err: errInvalid},
		{name: "more than one mapping", u: podUserns(two), err: errInvalid},
		{name: "root not mapped", u: podUserns(idmap(1, 1000, 100000)), err: errInvalid},
		{name: "root mapped to host root", u: podUserns(idmap(0, 0, 65536)), err: errInvalid},
		{name: "empty range", u: podUserns(idmap(0, 1000, 0)), err: errInvalid},
		{name: "overflowing range", u: podUserns(idmap(0, 4294967000, 65536)), err: errInvalid},
		{name: "gids missing", u: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_POD, Uids: idmap(0, 1000, 10)}, err: errInvalid},
		{name: "container mode", u: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_CONTAINER}, err: errInvalid},
		{name: "target mode", u: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_TARGET}, err: errInvalid},
		{name: "node with mappings", u: &runtimeapi.UserNamespace{Mode: runtimeapi.NamespaceMode_NODE, Uids: idmap(0, 1000, 10), Gids: idmap(0, 1000, 10)}, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := UserNamespace(tt.u)
			wantErr(t, err, tt.err)
			if !slices.Equal(got.UIDs, tt.want) || !slices.Equal(got.GIDs, tt.want) || got.Enabled() != (tt.want != nil) {
				t.Fatalf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// usernsSandbox is a pod with its own user namespace (root -> host 100000, 65536 ids).
func usernsSandbox() SandboxInfo {
	sb := testSandbox()
	sb.UserNSPath = "/run/berth/netns/sb1/user"
	sb.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
		NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: podUserns(idmap(0, 100000, 65536))},
	}
	return sb
}

func usernsConfig(mutate ...func(*runtimeapi.LinuxContainerSecurityContext)) *runtimeapi.ContainerConfig {
	return testConfig(func(c *runtimeapi.ContainerConfig) {
		c.Mounts = []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: "/var/lib/kubelet/pods/x/volumes/data"}}
		sc := c.Linux.SecurityContext
		sc.NamespaceOptions.UsernsOptions = podUserns(idmap(0, 100000, 65536))
		for _, m := range mutate {
			m(sc)
		}
	})
}

func TestGenerateUserNamespace(t *testing.T) {
	want := []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}}
	s, err := Generate("c1", usernsConfig(), usernsSandbox(), testImage, testOptions())
	wantErr(t, err, nil)
	// runc reads the mappings of a joined namespace itself and warns when the spec repeats them.
	if len(s.Linux.UIDMappings) != 0 || len(s.Linux.GIDMappings) != 0 {
		t.Fatalf("mappings uid %v gid %v next to a joined user namespace", s.Linux.UIDMappings, s.Linux.GIDMappings)
	}
	if !slices.Contains(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/run/berth/netns/sb1/user"}) {
		t.Fatalf("namespaces %v do not join the pod's user namespace", s.Linux.Namespaces)
	}
	binds := 0
	for _, m := range s.Mounts {
		idmapped := slices.Equal(m.UIDMappings, want) && slices.Equal(m.GIDMappings, want)
		if m.Type == "bind" {
			binds++
			if !idmapped {
				t.Errorf("bind mount %s is not idmapped: %+v", m.Destination, m)
			}
		} else if len(m.UIDMappings) > 0 {
			t.Errorf("%s mount %s idmapped", m.Type, m.Destination)
		}
	}
	if binds != 5 { // /data, hosts, hostname, resolv.conf, shm
		t.Errorf("%d bind mounts, want 5", binds)
	}
}

func TestGenerateUserNamespaceKeepsRequestedMountMappings(t *testing.T) {
	own := idmap(0, 5000, 10)
	cfg := usernsConfig()
	cfg.Mounts[0].UidMappings, cfg.Mounts[0].GidMappings = own, own
	s, err := Generate("c1", cfg, usernsSandbox(), testImage, testOptions())
	wantErr(t, err, nil)
	m, i := findMount(s.Mounts, "/data")
	if i < 0 || !slices.Equal(m.UIDMappings, []specs.LinuxIDMapping{{ContainerID: 0, HostID: 5000, Size: 10}}) {
		t.Fatalf("/data: %+v", m)
	}
}

func TestGenerateUserNamespaceRefusals(t *testing.T) {
	node := runtimeapi.NamespaceMode_NODE
	noUserns := func(sb SandboxInfo) SandboxInfo { sb.UserNSPath = ""; return sb }
	hostPod := func(sb SandboxInfo) SandboxInfo { sb.SecurityContext = nil; return sb }
	tests := []struct {
		name string
		cfg  *runtimeapi.ContainerConfig
		sb   func(SandboxInfo) SandboxInfo
		user specs.User
		err  error
	}{
		{name: "sandbox without a pinned user namespace", cfg: usernsConfig(), sb: noUserns, err: errFailedPrecondition},
		{name: "container userns in a host-userns pod", cfg: usernsConfig(), sb: hostPod, err: errInvalid},
		{name: "container mappings differ from the pod's", cfg: usernsConfig(func(sc *runtimeapi.LinuxContainerSecurityContext) {
			sc.NamespaceOptions.UsernsOptions = podUserns(idmap(0, 200000, 65536))
		}), err: errInvalid},
		{name: "privileged", cfg: usernsConfig(func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.Privileged = true }), sb: func(sb SandboxInfo) SandboxInfo {
			sb.SecurityContext.Privileged = true
			return sb
		}, err: errInvalid},
		{name: "host network", cfg: usernsConfig(func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.NamespaceOptions.Network = node }), err: errInvalid},
		{name: "host pid", cfg: usernsConfig(func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.NamespaceOptions.Pid = node }), err: errInvalid},
		{name: "uid outside the mapping", cfg: usernsConfig(), user: specs.User{UID: 70000}, err: errInvalid},
		{name: "supplementary gid outside the mapping", cfg: usernsConfig(), user: specs.User{UID: 1, GID: 1, AdditionalGids: []uint32{1, 65536}}, err: errInvalid},
		{name: "last mapped ids are fine", cfg: usernsConfig(), user: specs.User{UID: 65535, GID: 65535, AdditionalGids: []uint32{65535}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := usernsSandbox()
			if tt.sb != nil {
				sb = tt.sb(sb)
			}
			opts := testOptions()
			opts.Users = fakeUsers{user: tt.user}
			_, err := Generate("c1", tt.cfg, sb, testImage, opts)
			wantErr(t, err, tt.err)
		})
	}
}

func TestIdmapMountsLeavesImageVolumes(t *testing.T) {
	m := IDMappings{
		UIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDs: []specs.LinuxIDMapping{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	mounts := []specs.Mount{
		{Destination: "/data", Type: "bind", Source: "/host/data"},
		{Destination: "/vol", Type: "bind", Source: "/bundle/imagevol/0"},
		{Destination: "/etcvol", Type: "bind", Source: "/bundle/imagevol/1/etc"},
		{Destination: "/proc", Type: "proc", Source: "proc"},
		{Destination: "/anon", Type: "bind", Source: "/root/containers/c/volumes/0"},
	}
	idmapMounts(mounts, m, map[string]string{"/vol": "/bundle/imagevol/0", "/etcvol": "/bundle/imagevol/1/etc"},
		map[string]string{"/anon": "/root/containers/c/volumes/0"})
	tests := []struct {
		dst    string
		mapped bool
	}{
		{"/data", true},
		{"/vol", false},    // staged from idmapped layers
		{"/etcvol", false}, // an image_sub_path of one
		{"/proc", false},   // mounted inside the user namespace
		{"/anon", false},   // an anonymous volume, copied with the ids of the idmapped root
	}
	for _, tt := range tests {
		mt, i := findMount(mounts, tt.dst)
		if i < 0 {
			t.Fatalf("no mount %s", tt.dst)
		}
		if got := len(mt.UIDMappings) > 0 && len(mt.GIDMappings) > 0; got != tt.mapped {
			t.Errorf("%s idmapped = %v, want %v", tt.dst, got, tt.mapped)
		}
	}
}
