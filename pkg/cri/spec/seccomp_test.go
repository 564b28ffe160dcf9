package spec

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeProfiles serves Localhost profiles from memory; a missing path is ErrNotFound.
type fakeProfiles map[string]string

func (f fakeProfiles) LoadSeccompProfile(path string) ([]byte, error) {
	b, ok := f[path]
	if !ok {
		return nil, errdefs.ErrNotFound
	}
	return []byte(b), nil
}

const blockChmod = `{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod", "fchmodat"], "action": "SCMP_ACT_ERRNO"}]}`

func seccompSC(p *runtimeapi.SecurityProfile, path string) *runtimeapi.LinuxContainerSecurityContext {
	return &runtimeapi.LinuxContainerSecurityContext{Seccomp: p, SeccompProfilePath: path}
}

// allowsSyscall reports whether the filter has an SCMP_ACT_ALLOW rule naming sys.
func allowsSyscall(s *specs.LinuxSeccomp, sys string) bool {
	for _, r := range s.Syscalls {
		if r.Action == specs.ActAllow && slices.Contains(r.Names, sys) {
			return true
		}
	}
	return false
}

func TestSeccomp(t *testing.T) {
	profiles := fakeProfiles{"/etc/seccomp/chmod.json": blockChmod, "/etc/seccomp/bad.json": "{not json", "/etc/seccomp/empty.json": "{}"}
	local := func(ref string) *runtimeapi.SecurityProfile {
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: ref}
	}
	tests := []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		want string // "" none, "default" moby's, "chmod" the localhost profile
		err  error
	}{
		{name: "nothing is unconfined", sc: nil, want: ""},
		{name: "empty profile is RuntimeDefault", sc: seccompSC(&runtimeapi.SecurityProfile{}, ""), want: "default"},
		{name: "unconfined", sc: seccompSC(&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, ""), want: ""},
		{name: "localhost", sc: seccompSC(local("/etc/seccomp/chmod.json"), ""), want: "chmod"},
		{name: "localhost profile without rules is unconfined", sc: seccompSC(local("/etc/seccomp/empty.json"), ""), want: ""},
		{name: "field wins over the deprecated path", sc: seccompSC(&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, "runtime/default"), want: ""},
		{name: "path runtime/default", sc: seccompSC(nil, "runtime/default"), want: "default"},
		{name: "path docker/default", sc: seccompSC(nil, "docker/default"), want: "default"},
		{name: "path unconfined", sc: seccompSC(nil, "unconfined"), want: ""},
		{name: "path localhost", sc: seccompSC(nil, "localhost//etc/seccomp/chmod.json"), want: "chmod"},
		{name: "privileged ignores the profile", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Seccomp: local("/missing.json")}, want: ""},
		{name: "unknown path form", sc: seccompSC(nil, "strict"), err: errInvalid},
		{name: "missing localhost file", sc: seccompSC(local("/etc/seccomp/missing.json"), ""), err: errInvalid},
		{name: "unparsable localhost file", sc: seccompSC(local("/etc/seccomp/bad.json"), ""), err: errInvalid},
		{name: "relative localhost path", sc: seccompSC(local("chmod.json"), ""), err: errInvalid},
		{name: "empty localhost ref", sc: seccompSC(local(""), ""), err: errInvalid},
		{name: "unknown profile type", sc: seccompSC(&runtimeapi.SecurityProfile{ProfileType: 9}, ""), err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			caps, err := Capabilities(tt.sc, nil)
			wantErr(t, err, nil)
			got, err := Seccomp(tt.sc, caps, profiles)
			wantErr(t, err, tt.err)
			switch {
			case tt.err != nil:
			case tt.want == "":
				if got != nil {
					t.Fatalf("want no filter, got default action %s with %d rules", got.DefaultAction, len(got.Syscalls))
				}
			case tt.want == "default":
				if got == nil || got.DefaultAction != specs.ActErrno || !allowsSyscall(got, "read") || allowsSyscall(got, "kexec_load") {
					t.Fatalf("want moby's default profile, got %s", dump(got))
				}
			case tt.want == "chmod":
				if got == nil || got.DefaultAction != specs.ActAllow || len(got.Syscalls) != 1 || got.Syscalls[0].Action != specs.ActErrno || !slices.Contains(got.Syscalls[0].Names, "chmod") {
					t.Fatalf("want the chmod profile, got %s", dump(got))
				}
			}
		})
	}
}

func TestSeccompErrorNamesTheProfile(t *testing.T) {
	sc := seccompSC(&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/var/lib/kubelet/seccomp/nope.json"}, "")
	_, err := Seccomp(sc, nil, fakeProfiles{})
	if err == nil || !strings.Contains(err.Error(), "/var/lib/kubelet/seccomp/nope.json") {
		t.Fatalf("error %v does not name the profile", err)
	}
}

// The default profile opens syscalls to the capabilities that guard them, as Docker does:
// mount needs CAP_SYS_ADMIN, so it is allowed only when the container has it.
func TestSeccompDefaultFollowsCapabilities(t *testing.T) {
	def := seccompSC(&runtimeapi.SecurityProfile{}, "")
	for _, tt := range []struct {
		name string
		add  []string
		want bool
	}{
		{name: "default caps", want: false},
		{name: "SYS_ADMIN", add: []string{"SYS_ADMIN"}, want: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			def.Capabilities = &runtimeapi.Capability{AddCapabilities: tt.add}
			caps, err := Capabilities(def, nil)
			wantErr(t, err, nil)
			got, err := Seccomp(def, caps, nil)
			wantErr(t, err, nil)
			if allowsSyscall(got, "mount") != tt.want {
				t.Fatalf("mount allowed = %v, want %v", !tt.want, tt.want)
			}
		})
	}
}

func TestFileProfiles(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "chmod.json")
	if err := os.WriteFile(p, []byte(blockChmod), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := FileProfiles{}.LoadSeccompProfile(p)
	wantErr(t, err, nil)
	if string(b) != blockChmod {
		t.Fatalf("read %q", b)
	}
	_, err = FileProfiles{}.LoadSeccompProfile(filepath.Join(dir, "missing.json"))
	wantErr(t, err, errdefs.ErrNotFound)
	_, err = FileProfiles{}.LoadSeccompProfile(dir)
	if err == nil {
		t.Fatal("a directory was read as a profile")
	}
}

// A runtime handler's default profile replaces RuntimeDefault only: a container asking for
// Unconfined or a Localhost profile gets what it asked for.
func TestSeccompHandlerDefault(t *testing.T) {
	profiles := fakeProfiles{"/etc/berth/chmod.json": blockChmod}
	unconfined := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}
	chmod := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/etc/berth/chmod.json"}
	tests := []struct {
		name   string
		sc     *runtimeapi.LinuxContainerSecurityContext
		def    *runtimeapi.SecurityProfile
		filter bool // a filter at all
		chmod  bool // the handler's chmod profile
	}{
		{name: "no handler default keeps moby's", sc: seccompSC(&runtimeapi.SecurityProfile{}, ""), filter: true},
		{name: "handler unconfined", sc: seccompSC(&runtimeapi.SecurityProfile{}, ""), def: unconfined},
		{name: "handler unconfined, deprecated path", sc: seccompSC(nil, "runtime/default"), def: unconfined},
		{name: "handler profile file", sc: seccompSC(&runtimeapi.SecurityProfile{}, ""), def: chmod, filter: true, chmod: true},
		{name: "explicit unconfined stays", sc: seccompSC(unconfined, ""), def: chmod},
		{name: "nothing asked stays unconfined", sc: nil, def: chmod},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SeccompWithDefault(tt.sc, nil, profiles, tt.def)
			wantErr(t, err, nil)
			if (got != nil) != tt.filter {
				t.Fatalf("filter = %s, want one: %v", dump(got), tt.filter)
			}
			if isChmod := got != nil && got.DefaultAction == specs.ActAllow; isChmod != tt.chmod {
				t.Fatalf("filter = %s, want the handler's chmod profile: %v", dump(got), tt.chmod)
			}
		})
	}
}

func TestPodSeccomp(t *testing.T) {
	runtimeDefault := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}
	tests := []struct {
		name       string
		sc         *runtimeapi.LinuxSandboxSecurityContext
		wantFilter bool
		wantErr    bool
	}{
		{"no security context", nil, false, false},
		{"runtime default", &runtimeapi.LinuxSandboxSecurityContext{Seccomp: runtimeDefault}, true, false},
		{"deprecated path", &runtimeapi.LinuxSandboxSecurityContext{SeccompProfilePath: "runtime/default"}, true, false},
		{"privileged pod is never filtered", &runtimeapi.LinuxSandboxSecurityContext{Seccomp: runtimeDefault, Privileged: true}, false, false},
		{"localhost", &runtimeapi.LinuxSandboxSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
			ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/p.json"}}, true, false},
		{"missing localhost", &runtimeapi.LinuxSandboxSecurityContext{Seccomp: &runtimeapi.SecurityProfile{
			ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/missing.json"}}, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PodSeccomp(tt.sc, fakeProfiles{"/p.json": blockChmod})
			if (err != nil) != tt.wantErr || (got != nil) != tt.wantFilter {
				t.Fatalf("PodSeccomp = %v, %v; want filter %v, error %v", got, err, tt.wantFilter, tt.wantErr)
			}
			// The init has no capabilities to widen the default profile with.
			if tt.name == "runtime default" && allowsSyscall(got, "mount") {
				t.Error("the pod init's default profile allows mount (CAP_SYS_ADMIN's syscalls)")
			}
		})
	}
}
