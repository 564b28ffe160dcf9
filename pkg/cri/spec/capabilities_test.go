package spec

import (
	"os"
	"slices"
	"strings"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func capsSC(add, drop []string) *runtimeapi.LinuxContainerSecurityContext {
	return &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{AddCapabilities: add, DropCapabilities: drop}}
}

func without(list []string, drop ...string) []string {
	return slices.DeleteFunc(slices.Clone(list), func(c string) bool { return slices.Contains(drop, c) })
}

func TestCapabilities(t *testing.T) {
	tests := []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		want []string
		err  error
	}{
		{name: "defaults", want: defaultCapabilities},
		{name: "add without prefix", sc: capsSC([]string{"NET_ADMIN"}, nil), want: append(slices.Clone(defaultCapabilities), "CAP_NET_ADMIN")},
		{name: "add with prefix, lower case", sc: capsSC([]string{"cap_sys_ptrace"}, nil), want: append(slices.Clone(defaultCapabilities), "CAP_SYS_PTRACE")},
		{name: "add existing is no-op", sc: capsSC([]string{"CHOWN"}, nil), want: defaultCapabilities},
		{name: "drop", sc: capsSC(nil, []string{"NET_RAW", "CAP_MKNOD"}), want: without(defaultCapabilities, "CAP_NET_RAW", "CAP_MKNOD")},
		{name: "drop ALL", sc: capsSC(nil, []string{"ALL"}), want: nil},
		{name: "drop ALL then add", sc: capsSC([]string{"NET_BIND_SERVICE"}, []string{"ALL"}), want: []string{"CAP_NET_BIND_SERVICE"}},
		{name: "add ALL", sc: capsSC([]string{"ALL"}, nil), want: allCapabilities},
		{name: "add ALL drop one", sc: capsSC([]string{"all"}, []string{"SYS_ADMIN"}), want: without(allCapabilities, "CAP_SYS_ADMIN")},
		{name: "drop wins over add", sc: capsSC([]string{"NET_ADMIN"}, []string{"NET_ADMIN"}), want: defaultCapabilities},
		{name: "unknown add", sc: capsSC([]string{"FLY"}, nil), err: errInvalid},
		{name: "unknown drop", sc: capsSC(nil, []string{"CAP_FLY"}), err: errInvalid},
		{name: "privileged gets all", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true, Capabilities: &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}}, want: allCapabilities},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Capabilities(tt.sc, nil)
			wantErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			for set, caps := range map[string][]string{"bounding": got.Bounding, "effective": got.Effective, "permitted": got.Permitted} {
				if !slices.Equal(caps, tt.want) {
					t.Errorf("%s: got %v\nwant %v", set, caps, tt.want)
				}
			}
			if len(got.Inheritable) != 0 || len(got.Ambient) != 0 {
				t.Errorf("inheritable %v ambient %v, want none", got.Inheritable, got.Ambient)
			}
		})
	}
}

func TestCapabilitiesUnknownNamesIt(t *testing.T) {
	_, err := Capabilities(capsSC([]string{"FLY"}, nil), nil)
	if err == nil || !strings.Contains(err.Error(), `"FLY"`) {
		t.Fatalf("error should name the capability: %v", err)
	}
}

func TestCapabilitiesAmbient(t *testing.T) {
	sc := &runtimeapi.LinuxContainerSecurityContext{Capabilities: &runtimeapi.Capability{
		DropCapabilities:       []string{"ALL"},
		AddAmbientCapabilities: []string{"NET_BIND_SERVICE"},
	}}
	got, err := Capabilities(sc, nil)
	wantErr(t, err, nil)
	want := []string{"CAP_NET_BIND_SERVICE"}
	for set, caps := range map[string][]string{"bounding": got.Bounding, "effective": got.Effective, "permitted": got.Permitted, "inheritable": got.Inheritable, "ambient": got.Ambient} {
		if !slices.Equal(caps, want) {
			t.Errorf("%s: got %v, want %v", set, caps, want)
		}
	}
}

func TestCapabilitiesDoesNotAliasDefaults(t *testing.T) {
	got, err := Capabilities(nil, nil)
	wantErr(t, err, nil)
	got.Bounding[0] = "CAP_SYS_ADMIN"
	if defaultCapabilities[0] != "CAP_CHOWN" {
		t.Fatal("the default capability list was modified through a generated spec")
	}
}

func TestCapabilitiesFromHost(t *testing.T) {
	host := without(allCapabilities, "CAP_SYS_RESOURCE")
	tests := []struct {
		name string
		sc   *runtimeapi.LinuxContainerSecurityContext
		want []string
	}{
		{name: "privileged gets the host's", sc: &runtimeapi.LinuxContainerSecurityContext{Privileged: true}, want: host},
		{name: "add ALL gets the host's", sc: capsSC([]string{"ALL"}, nil), want: host},
		{name: "defaults unaffected", sc: nil, want: defaultCapabilities},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Capabilities(tt.sc, host)
			wantErr(t, err, nil)
			if !slices.Equal(got.Bounding, tt.want) || !slices.Equal(got.Effective, tt.want) {
				t.Fatalf("got %v\nwant %v", got.Bounding, tt.want)
			}
		})
	}
}

func TestCapsFromMask(t *testing.T) {
	// This node's root: everything up to CAP_CHECKPOINT_RESTORE (40) but CAP_SYS_RESOURCE (24),
	// plus a bit no kernel has named yet.
	got := capsFromMask(0x000001fffeffffff | 1<<50)
	if want := without(allCapabilities, "CAP_SYS_RESOURCE"); !slices.Equal(got, want) {
		t.Fatalf("got %v\nwant %v", got, want)
	}
	if got := capsFromMask(0x400); !slices.Equal(got, []string{"CAP_NET_BIND_SERVICE"}) {
		t.Fatalf("0x400: %v", got)
	}
}

func TestCurrentCapabilities(t *testing.T) {
	caps, err := CurrentCapabilities()
	wantErr(t, err, nil)
	if os.Geteuid() == 0 && !slices.Contains(caps, "CAP_SYS_ADMIN") {
		t.Fatalf("root without CAP_SYS_ADMIN? %v", caps)
	}
}
