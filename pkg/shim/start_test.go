package shim

import (
	"slices"
	"testing"
)

func TestSpawnArgs(t *testing.T) {
	base := StartOptions{Binary: "/bin/berth-shim", SandboxID: "sb", Dir: "/run/s", RuntimeRoot: "/run/runc"}
	want := []string{DaemonizeFlag, "--id", "sb", "--dir", "/run/s", "--runtime-root", "/run/runc", ReadyFDFlag, "3"}
	ext := base
	ext.OCIRuntime, ext.OCIShimCgroups = "/usr/bin/crun", true
	for _, tt := range []struct {
		name string
		opts StartOptions
		want []string
	}{
		{name: "builtin", opts: base, want: want},
		{name: "external runtime", opts: ext, want: append(slices.Clone(want), OCIRuntimeFlag, "/usr/bin/crun", OCIShimCgroupsFlag)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := spawnArgs(tt.opts); !slices.Equal(got, tt.want) {
				t.Errorf("spawnArgs = %q, want %q", got, tt.want)
			}
		})
	}
}
