package runtime

import (
	"slices"
	"syscall"
	"testing"
)

func TestOCIRuntimeCommands(t *testing.T) {
	r := ociRuntime{binary: "/usr/bin/crun", root: "/run/x/oci", self: "/usr/bin/berth-shim"}
	shimCg := r
	shimCg.shimCgroups = true
	hidden := shimCg
	hidden.hideUnified = true
	for _, tt := range []struct {
		name string
		r    ociRuntime
		cmd  []string
		join []string
		want []string
	}{
		{name: "exec in cgroups", r: shimCg, join: []string{"/sys/fs/cgroup/cpu/x", "/sys/fs/cgroup/memory/x"}, cmd: []string{"exec", "c1"},
			want: []string{"/usr/bin/berth-shim", OCIExecArg, "-", "/sys/fs/cgroup/cpu/x\n/sys/fs/cgroup/memory/x", "/usr/bin/crun", "--root", "/run/x/oci", "--log", "/run/x/oci/c1.log", CgroupManagerDisabledFlag, "exec", "c1"}},
		{name: "create", r: r, cmd: createArgs("/b", "/run/x/oci/c1.pid", "c1"),
			want: []string{"/usr/bin/crun", "--root", "/run/x/oci", "--log", "/run/x/oci/c1.log", "create", "--bundle", "/b", "--pid-file", "/run/x/oci/c1.pid", "c1"}},
		{name: "exec detached", r: r, cmd: execArgs("/p.json", "/p.pid", "c1"),
			want: []string{"/usr/bin/crun", "--root", "/run/x/oci", "--log", "/run/x/oci/c1.log", "exec", "--detach", "--process", "/p.json", "--pid-file", "/p.pid", "c1"}},
		{name: "kill all", r: r, cmd: killArgs("c1", syscall.SIGTERM, true),
			want: []string{"/usr/bin/crun", "--root", "/run/x/oci", "--log", "/run/x/oci/c1.log", "kill", "--all", "c1", "15"}},
		{name: "kill init", r: r, cmd: killArgs("c1", syscall.SIGKILL, false),
			want: []string{"/usr/bin/crun", "--root", "/run/x/oci", "--log", "/run/x/oci/c1.log", "kill", "c1", "9"}},
		{name: "shim cgroups", r: shimCg, cmd: []string{"start", "c1"},
			want: []string{"/usr/bin/crun", "--root", "/run/x/oci", "--log", "/run/x/oci/c1.log", CgroupManagerDisabledFlag, "start", "c1"}},
		{name: "hidden unified hierarchy", r: hidden, cmd: []string{"delete", "--force", "c1"},
			want: []string{"/usr/bin/berth-shim", OCIExecArg, ociExecHide, "-", "/usr/bin/crun", "--root", "/run/x/oci", "--log", "/run/x/oci/c1.log", CgroupManagerDisabledFlag, "delete", "--force", "c1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.join != nil {
				c := tt.r.command("c1", tt.join, tt.cmd...)
				if !slices.Equal(c.Args, tt.want) {
					t.Errorf("command = %q\nwant      %q", c.Args, tt.want)
				}
				return
			}
			c := tt.r.command("c1", nil, tt.cmd...)
			if !slices.Equal(c.Args, tt.want) {
				t.Errorf("command = %q\nwant      %q", c.Args, tt.want)
			}
			private := c.SysProcAttr != nil && c.SysProcAttr.Unshareflags&syscall.CLONE_NEWNS != 0
			if private != tt.r.hideUnified {
				t.Errorf("private mount namespace = %v, want %v", private, tt.r.hideUnified)
			}
		})
	}
}
