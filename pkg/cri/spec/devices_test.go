package spec

import (
	"fmt"
	"os"
	"reflect"
	"testing"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeDevices maps host paths to the nodes found there.
type fakeDevices map[string][]specs.LinuxDevice

func (f fakeDevices) LookupDevices(p string) ([]specs.LinuxDevice, error) {
	d, ok := f[p]
	if !ok {
		return nil, fmt.Errorf("stat %s: %w", p, errdefs.ErrNotFound)
	}
	return d, nil
}

func TestDevices(t *testing.T) {
	fuse := specs.LinuxDevice{Path: "/dev/fuse", Type: "c", Major: 10, Minor: 229}
	snd := []specs.LinuxDevice{
		{Path: "/dev/snd/controlC0", Type: "c", Major: 116, Minor: 2},
		{Path: "/dev/snd/pcmC0D0p", Type: "c", Major: 116, Minor: 3},
	}
	sda := specs.LinuxDevice{Path: "/dev/sda", Type: "b", Major: 8, Minor: 0}
	lookup := fakeDevices{"/dev/fuse": {fuse}, "/dev/snd": snd, "/dev/sda": {sda}, "/dev/empty": nil, "/dev": {fuse, sda}}
	denyAll := specs.LinuxDeviceCgroup{Allow: false, Access: "rwm"}
	allow := func(d specs.LinuxDevice, access string) specs.LinuxDeviceCgroup {
		return specs.LinuxDeviceCgroup{Allow: true, Type: d.Type, Major: ptr(d.Major), Minor: ptr(d.Minor), Access: access}
	}
	at := func(d specs.LinuxDevice, p string) specs.LinuxDevice { d.Path = p; return d }

	tests := []struct {
		name       string
		devices    []*runtimeapi.Device
		privileged bool
		wantDevs   []specs.LinuxDevice
		wantRules  []specs.LinuxDeviceCgroup
		err        error
	}{
		{name: "none", wantRules: []specs.LinuxDeviceCgroup{denyAll}},
		{
			name:      "single device renamed",
			devices:   []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/myfuse", Permissions: "rw"}},
			wantDevs:  []specs.LinuxDevice{at(fuse, "/dev/myfuse")},
			wantRules: []specs.LinuxDeviceCgroup{denyAll, allow(fuse, "rw")},
		},
		{
			name:      "default permissions and container path",
			devices:   []*runtimeapi.Device{{HostPath: "/dev/sda"}},
			wantDevs:  []specs.LinuxDevice{sda},
			wantRules: []specs.LinuxDeviceCgroup{denyAll, allow(sda, "rwm")},
		},
		{
			name:      "directory maps every node below it",
			devices:   []*runtimeapi.Device{{HostPath: "/dev/snd", ContainerPath: "/dev/sound", Permissions: "r"}},
			wantDevs:  []specs.LinuxDevice{at(snd[0], "/dev/sound/controlC0"), at(snd[1], "/dev/sound/pcmC0D0p")},
			wantRules: []specs.LinuxDeviceCgroup{denyAll, allow(snd[0], "r"), allow(snd[1], "r")},
		},
		{
			name:      "duplicate container path keeps one node",
			devices:   []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "/dev/x"}, {HostPath: "/dev/sda", ContainerPath: "/dev/x"}},
			wantDevs:  []specs.LinuxDevice{at(sda, "/dev/x")},
			wantRules: []specs.LinuxDeviceCgroup{denyAll, allow(fuse, "rwm"), allow(sda, "rwm")},
		},
		{
			name:       "privileged gets host devices and allow all",
			privileged: true,
			devices:    []*runtimeapi.Device{{HostPath: "/dev/snd"}},
			wantDevs:   []specs.LinuxDevice{fuse, sda, snd[0], snd[1]},
			wantRules:  []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}},
		},
		{name: "bad permissions", devices: []*runtimeapi.Device{{HostPath: "/dev/fuse", Permissions: "rwx"}}, err: errInvalid},
		{name: "relative container path", devices: []*runtimeapi.Device{{HostPath: "/dev/fuse", ContainerPath: "fuse"}}, err: errInvalid},
		{name: "missing host device", devices: []*runtimeapi.Device{{HostPath: "/dev/nope"}}, err: errdefs.ErrNotFound},
		{name: "directory without devices", devices: []*runtimeapi.Device{{HostPath: "/dev/empty"}}, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			devs, rules, err := Devices(&runtimeapi.ContainerConfig{Devices: tt.devices}, tt.privileged, lookup)
			wantErr(t, err, tt.err)
			if tt.err != nil {
				return
			}
			if !reflect.DeepEqual(devs, tt.wantDevs) {
				t.Errorf("devices: got %s\nwant %s", dump(devs), dump(tt.wantDevs))
			}
			if !reflect.DeepEqual(rules, tt.wantRules) {
				t.Errorf("rules: got %s\nwant %s", dump(rules), dump(tt.wantRules))
			}
		})
	}
}

func TestHostDevices(t *testing.T) {
	devs, err := HostDevices{}.LookupDevices("/dev/null")
	wantErr(t, err, nil)
	if len(devs) != 1 || devs[0].Path != "/dev/null" || devs[0].Type != "c" || devs[0].Major != 1 || devs[0].Minor != 3 {
		t.Fatalf("/dev/null: %+v", devs)
	}
	if devs[0].FileMode == nil || *devs[0].FileMode&os.ModePerm != 0o666 {
		t.Fatalf("/dev/null mode: %v", devs[0].FileMode)
	}

	_, err = HostDevices{}.LookupDevices("/dev/does-not-exist")
	wantErr(t, err, errdefs.ErrNotFound)

	regular := writeRootfs(t, map[string]string{"file": "x"}) + "/file"
	_, err = HostDevices{}.LookupDevices(regular)
	wantErr(t, err, errInvalid)

	all, err := HostDevices{}.LookupDevices("/dev")
	wantErr(t, err, nil)
	var sawNull bool
	for _, d := range all {
		if d.Path == "/dev/null" {
			sawNull = true
		}
		if d.Path == "/dev/console" || len(d.Path) > 9 && d.Path[:9] == "/dev/pts/" {
			t.Errorf("%s should be skipped", d.Path)
		}
	}
	if !sawNull {
		t.Errorf("/dev/null missing from %d host devices", len(all))
	}
}
