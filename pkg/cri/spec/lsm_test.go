package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestAppArmor(t *testing.T) {
	local := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-nginx"}
	runtimeDefault := &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{}}
	off := AppArmorNode{}
	// A fake securityfs: the kernel lists k8s-nginx (and a profile whose name extends it).
	fs := filepath.Join(t.TempDir(), "apparmor")
	writeFile(t, filepath.Join(fs, "profiles"), AppArmorDefaultProfile+" (enforce)\nk8s-nginx (enforce)\nk8s-nginx-old//child (complain)\n")
	onNoDefault := AppArmorNode{Enabled: true, FS: fs}
	on := AppArmorNode{Enabled: true, Default: AppArmorDefaultProfile, FS: fs}
	otherLoaded := AppArmorNode{Enabled: true, Default: AppArmorDefaultProfile, FS: t.TempDir()}
	writeFile(t, filepath.Join(otherLoaded.FS, "profiles"), "k8s-nginx-old (enforce)\n")
	noSecurityfs := AppArmorNode{Enabled: true, Default: AppArmorDefaultProfile, FS: filepath.Join(t.TempDir(), "gone")}
	tests := []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		node AppArmorNode
		want string
		err  error
	}{
		{name: "nothing", sc: nil},
		{name: "runtime default without apparmor", sc: runtimeDefault},
		{name: "unconfined without apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}},
		{name: "localhost without apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, err: errInvalid},
		{name: "deprecated localhost without apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}, err: errInvalid},
		{name: "deprecated runtime/default", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}},
		{name: "deprecated garbage", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "strict"}, err: errInvalid},
		{name: "localhost with apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, node: on, want: "k8s-nginx"},
		{name: "localhost with the deprecated prefix", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/k8s-nginx"}}, node: on, want: "k8s-nginx"},
		{name: "localhost with the deprecated prefix, not loaded", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/k8s-nginx"}}, node: otherLoaded, err: errFailedPrecondition},
		{name: "localhost prefix alone", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "localhost/"}}, node: on, err: errInvalid},
		{name: "deprecated localhost with apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}, node: on, want: "k8s-nginx"},
		{name: "localhost not loaded", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, node: otherLoaded, err: errFailedPrecondition},
		{name: "deprecated localhost not loaded", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}, node: otherLoaded, err: errFailedPrecondition},
		{name: "localhost, securityfs unreadable", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, node: noSecurityfs, err: errdefs.ErrUnavailable},
		{name: "privileged is unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: local}, node: on},
		{name: "runtime default with apparmor", sc: runtimeDefault, node: on, want: AppArmorDefaultProfile},
		{name: "unspecified is runtime default with apparmor", sc: nil, node: on, want: AppArmorDefaultProfile},
		{name: "deprecated runtime/default with apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}, node: on, want: AppArmorDefaultProfile},
		{name: "runtime default, profile not loaded", sc: runtimeDefault, node: onNoDefault, err: errFailedPrecondition},
		{name: "unconfined, profile not loaded", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}, node: onNoDefault},
		{name: "privileged, profile not loaded", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, node: onNoDefault},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppArmor(tt.sc, tt.node)
			wantErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("profile %q, want %q", got, tt.want)
			}
		})
	}
	_, err := AppArmor(&runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, off)
	if err == nil || !strings.Contains(err.Error(), "apparmor is not enabled on this node") {
		t.Fatalf("error %v does not say apparmor is unavailable", err)
	}
	_, err = AppArmor(runtimeDefault, onNoDefault)
	if err == nil || !strings.Contains(err.Error(), AppArmorDefaultProfile) {
		t.Fatalf("error %v does not name the missing profile", err)
	}
	noParser := onNoDefault
	noParser.NoDefault = "install the apparmor package"
	if _, err = AppArmor(runtimeDefault, noParser); err == nil || !strings.Contains(err.Error(), noParser.NoDefault) {
		t.Fatalf("error %v does not say how to fix it", err)
	}
	if _, err = AppArmor(&runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, otherLoaded); err == nil || !strings.Contains(err.Error(), `"k8s-nginx" is not loaded`) {
		t.Fatalf("error %v does not name the profile that is not loaded", err)
	}
}

func TestProbeAppArmor(t *testing.T) {
	tests := []struct {
		name       string
		enabled    string // "" = module absent
		securityfs bool
		profiles   string
		want       AppArmorNode
	}{
		{name: "no module"},
		{name: "module disabled", enabled: "N\n", securityfs: true},
		{name: "no securityfs", enabled: "Y\n"},
		{name: "enabled, default not loaded", enabled: "Y\n", securityfs: true, profiles: "docker-default (enforce)\n",
			want: AppArmorNode{Enabled: true}},
		{name: "enabled, prefix is not the profile", enabled: "Y\n", securityfs: true, profiles: AppArmorDefaultProfile + "-old (enforce)\n",
			want: AppArmorNode{Enabled: true}},
		{name: "enabled, default loaded", enabled: "Y\n", securityfs: true,
			profiles: "docker-default (enforce)\n" + AppArmorDefaultProfile + " (enforce)\n",
			want:     AppArmorNode{Enabled: true, Default: AppArmorDefaultProfile}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := t.TempDir()
			if tt.enabled != "" {
				writeFile(t, filepath.Join(sys, "module", "apparmor", "parameters", "enabled"), tt.enabled)
			}
			if tt.securityfs {
				writeFile(t, filepath.Join(sys, "kernel", "security", "apparmor", "profiles"), tt.profiles)
			}
			if tt.want.Enabled {
				tt.want.FS = filepath.Join(sys, "kernel", "security", "apparmor")
			}
			if got := ProbeAppArmor(sys); got != tt.want {
				t.Fatalf("ProbeAppArmor = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestSELinux(t *testing.T) {
	opts := &runtimeapi.SELinuxOption{User: "system_u", Role: "system_r", Type: "container_t", Level: "s0:c1,c2"}
	tests := []struct {
		name    string
		sc      *runtimeapi.LinuxContainerSecurityContext
		enabled bool
		err     error
	}{
		{name: "off: options ignored", sc: &runtimeapi.LinuxContainerSecurityContext{SelinuxOptions: opts}},
		{name: "on: no options", sc: &runtimeapi.LinuxContainerSecurityContext{}, enabled: true},
		{name: "on: empty options", sc: &runtimeapi.LinuxContainerSecurityContext{SelinuxOptions: &runtimeapi.SELinuxOption{}}, enabled: true},
		{name: "on: options refused", sc: &runtimeapi.LinuxContainerSecurityContext{SelinuxOptions: opts}, enabled: true, err: errdefs.ErrNotImplemented},
		{name: "on: privileged is unlabelled", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, SelinuxOptions: opts}, enabled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, SELinux(tt.sc, tt.enabled), tt.err)
		})
	}
}
