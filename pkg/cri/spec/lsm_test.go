package spec

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestAppArmor(t *testing.T) {
	local := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "k8s-nginx"}
	tests := []struct {
		name    string
		sc      *runtimeapi.LinuxContainerSecurityContext
		enabled bool
		want    string
		err     error
	}{
		{name: "nothing", sc: nil},
		{name: "runtime default without apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{}}},
		{name: "unconfined without apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}}},
		{name: "localhost without apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, err: errInvalid},
		{name: "deprecated localhost without apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}, err: errInvalid},
		{name: "deprecated runtime/default", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "runtime/default"}},
		{name: "deprecated garbage", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "strict"}, err: errInvalid},
		{name: "localhost with apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, enabled: true, want: "k8s-nginx"},
		{name: "deprecated localhost with apparmor", sc: &runtimeapi.LinuxContainerSecurityContext{ApparmorProfile: "localhost/k8s-nginx"}, enabled: true, want: "k8s-nginx"},
		{name: "privileged is unconfined", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Apparmor: local}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := AppArmor(tt.sc, tt.enabled)
			wantErr(t, err, tt.err)
			if got != tt.want {
				t.Fatalf("profile %q, want %q", got, tt.want)
			}
		})
	}
	_, err := AppArmor(&runtimeapi.LinuxContainerSecurityContext{Apparmor: local}, false)
	if err == nil || !strings.Contains(err.Error(), "apparmor is not enabled on this node") {
		t.Fatalf("error %v does not say apparmor is unavailable", err)
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
