package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Security contexts, checked from inside the container: each container prints
// what the kernel says about itself (/proc/self/status, /proc/mounts, failing
// syscalls) to its CRI log, and the test reads the log.

// Capability masks as /proc/<pid>/status prints them.
const (
	// capsDefault is Docker's and containerd's default set: CHOWN DAC_OVERRIDE FOWNER FSETID
	// KILL SETGID SETUID SETPCAP NET_BIND_SERVICE NET_RAW SYS_CHROOT MKNOD AUDIT_WRITE SETFCAP.
	capsDefault        = "00000000a80425fb"
	capsNone           = "0000000000000000"
	capsNetBindService = "0000000000000400" // bit 10
	capsDefaultNoRaw   = "00000000a80405fb" // default minus NET_RAW (bit 13)
	capsDefaultSysTime = "00000000aa0425fb" // default plus SYS_TIME (bit 25)
)

// printStatus prints the process's own status: the fields the tests compare.
const printStatus = "cat /proc/self/status"

func withSecurityContext(fn func(*runtimeapi.LinuxContainerSecurityContext)) ctrOption {
	return func(c *runtimeapi.ContainerConfig) {
		if c.Linux.SecurityContext == nil {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
		}
		fn(c.Linux.SecurityContext)
	}
}

func withMount(hostPath, containerPath string, readonly bool) ctrOption {
	return func(c *runtimeapi.ContainerConfig) {
		c.Mounts = append(c.Mounts, &runtimeapi.Mount{HostPath: hostPath, ContainerPath: containerPath, Readonly: readonly})
	}
}

// withPodPrivileged marks the sandbox privileged, as the kubelet does when any
// of its containers is.
func withPodPrivileged() podOption {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.Privileged = true }
}

func profile(typ runtimeapi.SecurityProfile_ProfileType, ref string) *runtimeapi.SecurityProfile {
	return &runtimeapi.SecurityProfile{ProfileType: typ, LocalhostRef: ref}
}

// runToExit runs cfg in p, waits for it to exit 0 and returns its stdout.
func runToExit(t *testing.T, a *agent, p pod, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := runContainer(t, a, p, cfg)
	st := waitExited(t, a, id, 30*time.Second)
	lines := readLog(t, logPath(p, cfg))
	if st.ExitCode != 0 {
		t.Fatalf("container %s exited %d\nstdout:\n%s\nstderr:\n%s", cfg.Metadata.Name, st.ExitCode,
			logText(lines, "stdout"), logText(lines, "stderr"))
	}
	return logText(lines, "stdout")
}

// tryCreate is createContainer that returns the agent's error instead of failing.
func tryCreate(t *testing.T, a *agent, p pod, cfg *runtimeapi.ContainerConfig) error {
	t.Helper()
	if imageStatus(t, a, cfg.Image.Image) == nil {
		pull(t, a, cfg.Image.Image)
	}
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	if cfg.Linux.SecurityContext.NamespaceOptions == nil {
		cfg.Linux.SecurityContext.NamespaceOptions = p.cfg.Linux.SecurityContext.NamespaceOptions
	}
	_, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	return err
}

// statusFields parses "Key:\tvalue" lines (the format of /proc/<pid>/status);
// values keep their inner spacing but lose the surrounding whitespace.
func statusFields(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if ok && k != "" && !strings.ContainsAny(k, " \t") {
			out[k] = strings.Join(strings.Fields(v), " ")
		}
	}
	return out
}

func procStatus(t *testing.T, pid int) map[string]string {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err, "read status of pid %d", pid)
	return statusFields(string(b))
}

func checkFields(t *testing.T, got, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// TestSecurityProcStatus checks seccomp mode, no_new_privs and capability sets
// as the kernel reports them for the container's process.
func TestSecurityProcStatus(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "secstatus"))
	type sc = runtimeapi.LinuxContainerSecurityContext
	for _, tc := range []struct {
		name string
		sc   func(*sc)
		want map[string]string
	}{
		{"defaults", func(*sc) {}, map[string]string{
			"Seccomp": "0", "NoNewPrivs": "0", "CapEff": capsDefault, "CapBnd": capsDefault, "CapPrm": capsDefault, "CapInh": capsNone, "CapAmb": capsNone}},
		{"seccomp-runtime-default", func(s *sc) { s.Seccomp = profile(runtimeapi.SecurityProfile_RuntimeDefault, "") }, map[string]string{
			"Seccomp": "2", "Seccomp_filters": "1", "NoNewPrivs": "0"}},
		{"seccomp-unconfined", func(s *sc) { s.Seccomp = profile(runtimeapi.SecurityProfile_Unconfined, "") }, map[string]string{
			"Seccomp": "0"}},
		{"seccomp-path-runtime-default", func(s *sc) { s.SeccompProfilePath = "runtime/default" }, map[string]string{
			"Seccomp": "2"}},
		{"seccomp-path-docker-default", func(s *sc) { s.SeccompProfilePath = "docker/default" }, map[string]string{
			"Seccomp": "2"}},
		{"seccomp-path-unconfined", func(s *sc) { s.SeccompProfilePath = "unconfined" }, map[string]string{
			"Seccomp": "0"}},
		// The structured field wins over the deprecated string.
		{"seccomp-field-wins", func(s *sc) {
			s.Seccomp = profile(runtimeapi.SecurityProfile_Unconfined, "")
			s.SeccompProfilePath = "runtime/default"
		}, map[string]string{"Seccomp": "0"}},
		{"no-new-privs", func(s *sc) { s.NoNewPrivs = true }, map[string]string{
			"NoNewPrivs": "1", "Seccomp": "0"}},
		{"no-new-privs-and-seccomp", func(s *sc) {
			s.NoNewPrivs = true
			s.Seccomp = profile(runtimeapi.SecurityProfile_RuntimeDefault, "")
		}, map[string]string{"NoNewPrivs": "1", "Seccomp": "2"}},
		{"drop-all", func(s *sc) {
			s.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}
		}, map[string]string{"CapEff": capsNone, "CapPrm": capsNone, "CapBnd": capsNone}},
		{"drop-all-add-net-bind-service", func(s *sc) {
			s.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}
		}, map[string]string{"CapEff": capsNetBindService, "CapPrm": capsNetBindService, "CapBnd": capsNetBindService}},
		{"drop-one-lowercase", func(s *sc) {
			s.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"net_raw"}}
		}, map[string]string{"CapEff": capsDefaultNoRaw, "CapBnd": capsDefaultNoRaw}},
		{"add-one-prefixed", func(s *sc) {
			s.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"CAP_SYS_TIME"}}
		}, map[string]string{"CapEff": capsDefaultSysTime, "CapBnd": capsDefaultSysTime}},
		// Ambient capabilities are how a non-root process keeps one: it must be in the
		// inheritable and permitted sets too, and survive the exec of cat.
		{"non-root-ambient", func(s *sc) {
			s.RunAsUser = &runtimeapi.Int64Value{Value: 1000}
			s.Capabilities = &runtimeapi.Capability{AddAmbientCapabilities: []string{"NET_BIND_SERVICE"}}
		}, map[string]string{"CapAmb": capsNetBindService, "CapInh": capsNetBindService, "CapEff": capsNetBindService,
			"CapPrm": capsNetBindService, "CapBnd": capsDefault}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctrConfig(tc.name, env.images.busybox, withShell(printStatus), withSecurityContext(tc.sc))
			checkFields(t, statusFields(runToExit(t, a, p, c)), tc.want)
		})
	}
}

// "add ALL" and privileged grant what the agent itself holds (root here lacks
// CAP_SYS_RESOURCE): the container's sets equal the agent's.
func TestSecurityPrivileged(t *testing.T) {
	a := env.shared
	host := procStatus(t, a.pid())
	p := runPod(t, a, podConfig(t, "secpriv", withPodPrivileged()))

	t.Run("add-all", func(t *testing.T) {
		c := ctrConfig("addall", env.images.busybox, withShell(printStatus), withSecurityContext(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"ALL"}}
		}))
		checkFields(t, statusFields(runToExit(t, a, p, c)), map[string]string{
			"CapEff": host["CapEff"], "CapBnd": host["CapBnd"], "CapPrm": host["CapPrm"]})
	})

	t.Run("privileged", func(t *testing.T) {
		// RuntimeDefault is what the kubelet sends by default: privileged containers are
		// never filtered anyway. /proc/timer_list and /sys/firmware are masked by default
		// (this kernel has no /proc/kcore); a privileged container sees them, /sys is rw and
		// /proc/sys has no read-only mount of its own.
		script := printStatus + `
echo "timer_list_bytes: $(head -c 64 /proc/timer_list | wc -c)"
echo "firmware_entries: $(ls -A /sys/firmware | wc -l)"
echo "sys_mount: $(awk '$2 == "/sys" { print $4 }' /proc/mounts | cut -d, -f1)"
echo "proc_sys_mounts: $(awk '$2 == "/proc/sys"' /proc/mounts | wc -l)"
`
		c := ctrConfig("priv", env.images.busybox, withShell(script), withSecurityContext(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.Privileged = true
			s.Seccomp = profile(runtimeapi.SecurityProfile_RuntimeDefault, "")
		}))
		// A pod of its own: sysfs has one superblock per network namespace, and
		// while an unprivileged container of the same pod still holds its
		// read-only /sys, a new sysfs mount of that namespace is read-only too.
		p := runPod(t, a, podConfig(t, "secpriv2", withPodPrivileged()))
		got := statusFields(runToExit(t, a, p, c))
		checkFields(t, got, map[string]string{
			"CapEff": host["CapEff"], "CapBnd": host["CapBnd"], "CapPrm": host["CapPrm"],
			"Seccomp": "0", "sys_mount": "rw", "proc_sys_mounts": "0", "timer_list_bytes": "64",
		})
		if n, _ := strconv.Atoi(got["firmware_entries"]); n == 0 {
			t.Errorf("/sys/firmware is empty in a privileged container (masked?)")
		}
	})

	t.Run("unprivileged-pod-refuses", func(t *testing.T) {
		up := runPod(t, a, podConfig(t, "secunpriv"))
		c := ctrConfig("priv", env.images.busybox, withCommand("true"), withSecurityContext(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.Privileged = true
		}))
		if err := tryCreate(t, a, up, c); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("privileged container in an unprivileged pod: %v, want InvalidArgument", err)
		}
	})
}

// The default profile is enforced, and follows the capabilities: unshare is
// refused without CAP_SYS_ADMIN (a user namespace needs no capability, so only
// the filter stops it) and allowed with it.
func TestSecuritySeccompRuntimeDefaultEnforced(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "secdefault"))
	script := `
if unshare -U true 2>/dev/null; then echo "userns: ok"; else echo "userns: refused"; fi
if unshare -m true 2>/dev/null; then echo "mountns: ok"; else echo "mountns: refused"; fi
`
	// Where AppArmor is enabled, containers get berth-default, which denies mount (as
	// docker-default): a new mount namespace stays refused even with CAP_SYS_ADMIN.
	sysAdminMountNS := "ok"
	if appArmorEnabled() {
		sysAdminMountNS = "refused"
	}
	type sc = runtimeapi.LinuxContainerSecurityContext
	for _, tc := range []struct {
		name string
		sc   func(*sc)
		want map[string]string
	}{
		{"unconfined", func(*sc) {}, map[string]string{"userns": "ok", "mountns": "refused"}},
		{"runtime-default", func(s *sc) { s.Seccomp = profile(runtimeapi.SecurityProfile_RuntimeDefault, "") },
			map[string]string{"userns": "refused", "mountns": "refused"}},
		{"runtime-default-sys-admin", func(s *sc) {
			s.Seccomp = profile(runtimeapi.SecurityProfile_RuntimeDefault, "")
			s.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"SYS_ADMIN"}}
		}, map[string]string{"userns": "ok", "mountns": sysAdminMountNS}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctrConfig(tc.name, env.images.busybox, withShell(script), withSecurityContext(tc.sc))
			checkFields(t, statusFields(runToExit(t, a, p, c)), tc.want)
		})
	}
}

// writeSeccompProfile writes a Docker-format profile that allows everything
// but mkdir, which fails with EPERM.
func writeSeccompProfile(t *testing.T) string {
	t.Helper()
	prof := map[string]any{
		"defaultAction": "SCMP_ACT_ALLOW",
		"syscalls": []map[string]any{
			{"names": []string{"mkdir", "mkdirat"}, "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
		},
	}
	b, err := json.Marshal(prof)
	must(t, err, "marshal profile")
	path := filepath.Join(t.TempDir(), "no-mkdir.json")
	must(t, os.WriteFile(path, b, 0o644), "write profile")
	return path
}

func TestSecuritySeccompLocalhost(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "seclocal"))
	path := writeSeccompProfile(t)
	script := `mkdir /made 2>&1 && echo "mkdir: ok"; grep '^Seccomp:' /proc/self/status`
	type sc = runtimeapi.LinuxContainerSecurityContext

	for _, tc := range []struct {
		name    string
		sc      func(*sc)
		blocked bool
	}{
		{"none", func(*sc) {}, false},
		{"localhost", func(s *sc) { s.Seccomp = profile(runtimeapi.SecurityProfile_Localhost, path) }, true},
		{"localhost-path", func(s *sc) { s.SeccompProfilePath = "localhost/" + path }, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runToExit(t, a, p, ctrConfig(tc.name, env.images.busybox, withShell(script), withSecurityContext(tc.sc)))
			got := statusFields(out)
			if tc.blocked {
				if !strings.Contains(out, "Operation not permitted") || got["Seccomp"] != "2" {
					t.Errorf("mkdir under the profile: want EPERM and Seccomp 2, got:\n%s", out)
				}
				return
			}
			if got["mkdir"] != "ok" || got["Seccomp"] != "0" {
				t.Errorf("mkdir without a profile: want ok and Seccomp 0, got:\n%s", out)
			}
		})
	}

	missing := filepath.Join(t.TempDir(), "absent.json")
	garbage := filepath.Join(t.TempDir(), "garbage.json")
	must(t, os.WriteFile(garbage, []byte("not a profile"), 0o644), "write garbage profile")
	for _, tc := range []struct {
		name, want string
		sc         func(*sc)
	}{
		{"missing", missing, func(s *sc) { s.Seccomp = profile(runtimeapi.SecurityProfile_Localhost, missing) }},
		{"missing-path", missing, func(s *sc) { s.SeccompProfilePath = "localhost/" + missing }},
		{"unparsable", garbage, func(s *sc) { s.Seccomp = profile(runtimeapi.SecurityProfile_Localhost, garbage) }},
		{"relative", "profiles/x.json", func(s *sc) { s.Seccomp = profile(runtimeapi.SecurityProfile_Localhost, "profiles/x.json") }},
		{"bad-path-value", "bogus/profile", func(s *sc) { s.SeccompProfilePath = "bogus/profile" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tryCreate(t, a, p, ctrConfig(tc.name, env.images.busybox, withCommand("true"), withSecurityContext(tc.sc)))
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: %v, want InvalidArgument naming %q", err, tc.want)
			}
		})
	}
}

// Requests the node cannot honour are refused at create, naming what was asked.
func TestSecurityRefusedRequests(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "secrefuse"))
	apparmor, _ := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	type sc = runtimeapi.LinuxContainerSecurityContext
	for _, tc := range []struct {
		name, want string
		sc         func(*sc)
		skip       bool
	}{
		{"unknown-capability-add", "CAP_NOPE", func(s *sc) {
			s.Capabilities = &runtimeapi.Capability{AddCapabilities: []string{"CAP_NOPE"}}
		}, false},
		{"unknown-capability-drop", "BOGUS", func(s *sc) {
			s.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"BOGUS"}}
		}, false},
		{"apparmor-localhost", "apparmor is not enabled", func(s *sc) {
			s.Apparmor = profile(runtimeapi.SecurityProfile_Localhost, "berth-test")
		}, strings.HasPrefix(string(apparmor), "Y")},
		{"apparmor-profile-string", "apparmor is not enabled", func(s *sc) {
			s.ApparmorProfile = "localhost/berth-test"
		}, strings.HasPrefix(string(apparmor), "Y")},
		{"run-as-group-alone", "run_as_group", func(s *sc) {
			s.RunAsGroup = &runtimeapi.Int64Value{Value: 1000}
		}, false},
		{"unknown-username", "nosuchuser", func(s *sc) { s.RunAsUsername = "nosuchuser" }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("AppArmor is enabled on this node")
			}
			err := tryCreate(t, a, p, ctrConfig(tc.name, env.images.busybox, withCommand("true"), withSecurityContext(tc.sc)))
			if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("create: %v, want InvalidArgument naming %q", err, tc.want)
			}
		})
	}
}

// AppArmor RuntimeDefault/Unconfined and SELinux options on a node without
// those LSMs are accepted and the container runs.
func TestSecurityLSMAccepted(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "seclsm"))
	type sc = runtimeapi.LinuxContainerSecurityContext
	_, statErr := os.Stat("/sys/fs/selinux/enforce")
	for _, tc := range []struct {
		name string
		sc   func(*sc)
		skip bool
	}{
		{"apparmor-runtime-default", func(s *sc) { s.Apparmor = profile(runtimeapi.SecurityProfile_RuntimeDefault, "") }, false},
		{"apparmor-unconfined", func(s *sc) { s.Apparmor = profile(runtimeapi.SecurityProfile_Unconfined, "") }, false},
		{"selinux-options", func(s *sc) {
			s.SelinuxOptions = &runtimeapi.SELinuxOption{User: "system_u", Role: "system_r", Type: "container_t", Level: "s0:c1,c2"}
		}, statErr == nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip {
				t.Skip("SELinux is enabled on this node")
			}
			out := runToExit(t, a, p, ctrConfig(tc.name, env.images.busybox, withShell("echo ran"), withSecurityContext(tc.sc)))
			if out != "ran\n" {
				t.Errorf("stdout %q, want \"ran\\n\"", out)
			}
		})
	}
}

// appArmorEnabled reports whether the kernel enforces AppArmor (the VM's does, this host's not).
func appArmorEnabled() bool {
	b, _ := os.ReadFile("/sys/module/apparmor/parameters/enabled")
	return strings.HasPrefix(string(b), "Y")
}

// maskScript prints what the default masked and read-only paths look like.
const maskScript = `
echo "keys_bytes: $(wc -c < /proc/keys)"
echo "timer_list_bytes: $(head -c 64 /proc/timer_list | wc -c)"
echo "firmware_entries: $(ls -A /sys/firmware | wc -l)"
if [ -e /proc/kcore ]; then echo "kcore_bytes: $(head -c 1 /proc/kcore | wc -c)"; else echo "kcore_bytes: absent"; fi
echo "sys_opts: $(awk '$2 == "/sys" { print $4 }' /proc/mounts | cut -d, -f1)"
echo "proc_sys_opts: $(awk '$2 == "/proc/sys" { print $4 }' /proc/mounts | cut -d, -f1)"
echo "proc_bus_opts: $(awk '$2 == "/proc/bus" { print $4 }' /proc/mounts | cut -d, -f1)"
if echo berth > /proc/sys/kernel/domainname 2>/dev/null; then echo "domainname_write: ok"; else echo "domainname_write: refused"; fi
`

// The defaults hide kernel information and make /proc/sys read-only; a
// request's own lists replace them. Writing domainname only touches the pod's
// UTS namespace.
func TestSecurityMaskedAndReadonlyPaths(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "secmask"))

	// /proc/kcore is masked when the kernel has one (this test VM's kernel may not).
	kcore := "absent"
	if fileExists("/proc/kcore") {
		kcore = "0"
	}

	t.Run("defaults", func(t *testing.T) {
		got := statusFields(runToExit(t, a, p, ctrConfig("defaults", env.images.busybox, withShell(maskScript))))
		checkFields(t, got, map[string]string{
			"keys_bytes": "0", "timer_list_bytes": "0", "firmware_entries": "0", "kcore_bytes": kcore,
			"sys_opts": "ro", "proc_sys_opts": "ro", "proc_bus_opts": "ro", "domainname_write": "refused",
		})
	})

	t.Run("custom-replace-defaults", func(t *testing.T) {
		c := ctrConfig("custom", env.images.busybox, withShell(maskScript), withSecurityContext(func(s *runtimeapi.LinuxContainerSecurityContext) {
			s.MaskedPaths = []string{"/proc/timer_list"}
			s.ReadonlyPaths = []string{"/proc/bus"}
		}))
		got := statusFields(runToExit(t, a, p, c))
		// berth-default (AppArmor nodes) denies every write below /proc/sys.
		domainname := "ok"
		if appArmorEnabled() {
			domainname = "refused"
		}
		checkFields(t, got, map[string]string{
			"timer_list_bytes": "0", "sys_opts": "ro", "proc_sys_opts": "", "proc_bus_opts": "ro", "domainname_write": domainname,
		})
		if n, _ := strconv.Atoi(got["firmware_entries"]); n == 0 {
			t.Errorf("/sys/firmware still masked although the request's masked_paths do not name it")
		}
		if got["keys_bytes"] == "0" {
			t.Errorf("/proc/keys still masked although the request's masked_paths do not name it")
		}
	})
}

// A read-only rootfs refuses writes, but bind mounts from the host (an
// emptyDir) and /dev/shm stay writable; /etc/hosts follows the rootfs.
func TestSecurityReadonlyRootfs(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "secro"))
	tmp := t.TempDir()
	script := `
for f in /rootfile /etc/newfile /tmp/ok /dev/shm/ok; do
	if touch $f 2>/dev/null; then echo "$f: ok"; else echo "$f: refused"; fi
done
if echo x >> /etc/hosts 2>/dev/null; then echo "/etc/hosts: ok"; else echo "/etc/hosts: refused"; fi
echo "root_opts: $(awk '$2 == "/" { print $4 }' /proc/mounts | cut -d, -f1)"
`
	for _, tc := range []struct {
		name     string
		readonly bool
		want     map[string]string
	}{
		{"readonly", true, map[string]string{"/rootfile": "refused", "/etc/newfile": "refused", "/tmp/ok": "ok",
			"/dev/shm/ok": "ok", "/etc/hosts": "refused", "root_opts": "ro"}},
		{"writable", false, map[string]string{"/rootfile": "ok", "/etc/newfile": "ok", "/tmp/ok": "ok",
			"/dev/shm/ok": "ok", "/etc/hosts": "ok", "root_opts": "rw"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(tmp, tc.name)
			must(t, os.Mkdir(dir, 0o777), "mkdir")
			c := ctrConfig(tc.name, env.images.busybox, withShell(script), withMount(dir, "/tmp", false),
				withSecurityContext(func(s *runtimeapi.LinuxContainerSecurityContext) { s.ReadonlyRootfs = tc.readonly }))
			checkFields(t, statusFields(runToExit(t, a, p, c)), tc.want)
			if !fileExists(filepath.Join(dir, "ok")) {
				t.Errorf("the file written to /tmp is not in the host directory")
			}
		})
	}
}

// The process's uid, gid and groups, from the kernel: /proc/self/status.
func TestSecurityUsers(t *testing.T) {
	a := env.shared
	p := runPod(t, a, podConfig(t, "secuser"))
	type sc = runtimeapi.LinuxContainerSecurityContext
	i64 := func(v int64) *runtimeapi.Int64Value { return &runtimeapi.Int64Value{Value: v} }
	ids := func(u, g string) map[string]string {
		return map[string]string{"Uid": strings.Repeat(u+" ", 3) + u, "Gid": strings.Repeat(g+" ", 3) + g}
	}
	with := func(m map[string]string, kv ...string) map[string]string {
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	for _, tc := range []struct {
		name, image string
		sc          func(*sc)
		want        map[string]string
	}{
		{"image-default-root", env.images.busybox, func(*sc) {}, with(ids("0", "0"), "Groups", "0", "user", "root")},
		// Merge (the default policy) adds berth's membership of group extra (1001) from the
		// image's /etc/group to the requested groups.
		{"uid-gid-supplemental", env.images.busybox, func(s *sc) {
			s.RunAsUser, s.RunAsGroup, s.SupplementalGroups = i64(1000), i64(1000), []int64{2000}
		}, with(ids("1000", "1000"), "Groups", "1000 1001 2000", "user", "berth", "CapEff", capsNone)},
		{"uid-other-gid", env.images.busybox, func(s *sc) {
			s.RunAsUser, s.RunAsGroup = i64(1000), i64(3000)
		}, with(ids("1000", "3000"), "Groups", "1001 3000", "user", "berth")},
		{"username", env.images.busybox, func(s *sc) { s.RunAsUsername = "berth" },
			with(ids("1000", "1000"), "Groups", "1000 1001", "user", "berth")},
		{"username-merge-explicit", env.images.busybox, func(s *sc) {
			s.RunAsUsername = "berth"
			s.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Merge
		}, with(ids("1000", "1000"), "Groups", "1000 1001")},
		{"username-strict", env.images.busybox, func(s *sc) {
			s.RunAsUsername = "berth"
			s.SupplementalGroups = []int64{2000}
			s.SupplementalGroupsPolicy = runtimeapi.SupplementalGroupsPolicy_Strict
		}, with(ids("1000", "1000"), "Groups", "1000 2000")},
		// A uid absent from /etc/passwd gets gid 0, as with Docker and containerd.
		{"uid-not-in-passwd", env.images.busybox, func(s *sc) { s.RunAsUser = i64(4242) },
			with(ids("4242", "0"), "Groups", "0")},
		{"nonroot-image", env.images.nonroot, func(*sc) {},
			with(ids("1000", "1000"), "Groups", "1000 1001", "user", "berth", "CapEff", capsNone)},
		{"nonroot-image-run-as-root", env.images.nonroot, func(s *sc) { s.RunAsUser = i64(0) },
			with(ids("0", "0"), "Groups", "0", "user", "root", "CapEff", capsDefault)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := ctrConfig(tc.name, tc.image, withShell(printStatus+`; echo "user: $(id -un)"`), withSecurityContext(tc.sc))
			checkFields(t, statusFields(runToExit(t, a, p, c)), tc.want)
		})
	}
}

// User namespaces are not wired into the agent yet; a pod asking for one with
// mappings no runtime accepts (two ranges, or container root unmapped) must
// still be refused as InvalidArgument, by RunPodSandbox or, failing that, by
// CreateContainer, which validates the pod's option again.
func TestSecurityUserNamespaceBadMappings(t *testing.T) {
	a := env.shared
	good := &runtimeapi.IDMapping{HostId: 100000, ContainerId: 0, Length: 65536}
	for _, tc := range []struct {
		name       string
		uids, gids []*runtimeapi.IDMapping
	}{
		{"two-uid-ranges", []*runtimeapi.IDMapping{good, {HostId: 200000, ContainerId: 65536, Length: 10}}, []*runtimeapi.IDMapping{good}},
		{"root-unmapped", []*runtimeapi.IDMapping{{HostId: 100000, ContainerId: 1, Length: 65536}}, []*runtimeapi.IDMapping{good}},
		{"no-gid-mapping", []*runtimeapi.IDMapping{good}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := podConfig(t, "userns-"+tc.name, func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = &runtimeapi.UserNamespace{
					Mode: runtimeapi.NamespaceMode_POD, Uids: tc.uids, Gids: tc.gids,
				}
			})
			resp, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				p := pod{id: resp.PodSandboxId, cfg: cfg}
				t.Cleanup(func() {
					ctx := ctxT(t)
					_, _ = a.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
					if _, err := a.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
						t.Errorf("cleanup: remove pod %s: %v", p.id, err)
					}
				})
				err = tryCreate(t, a, p, ctrConfig("c", env.images.busybox, withCommand("true")))
				t.Logf("RunPodSandbox accepted the mappings; CreateContainer: %v", err)
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("pod with user namespace mappings %v / %v: %v, want InvalidArgument", tc.uids, tc.gids, err)
			}
		})
	}
}

// podInitPid reads the pod init's host pid from the verbose pod status.
func podInitPid(t *testing.T, a *agent, p pod) int {
	t.Helper()
	st, err := a.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: p.id, Verbose: true})
	must(t, err, "pod status")
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(st.Info["info"]), &info); err != nil || info.Pid <= 0 {
		t.Fatalf("pod init pid from verbose status: %v (%q)", err, st.Info["info"])
	}
	return info.Pid
}

// TestSecurityPodSeccomp: the pod-level seccomp profile filters the pod init (the process
// holding a shared PID namespace, berth's pause); without one the init is unfiltered.
func TestSecurityPodSeccomp(t *testing.T) {
	a := env.shared
	for _, tt := range []struct {
		name    string
		profile *runtimeapi.SecurityProfile
		userns  bool
		want    string
	}{
		{"runtime default", profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), false, "2"},
		{"runtime default in a user namespace", profile(runtimeapi.SecurityProfile_RuntimeDefault, ""), true, "2"},
		{"unconfined", nil, false, "0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			opts := []podOption{withPodPID(runtimeapi.NamespaceMode_POD), func(c *runtimeapi.PodSandboxConfig) {
				c.Linux.SecurityContext.Seccomp = tt.profile
			}}
			if tt.userns {
				opts = append(opts, withUserNS(kubeletUserNS()))
			}
			p := runPod(t, a, podConfig(t, "podseccomp", opts...))
			pid := podInitPid(t, a, p)
			checkFields(t, procStatus(t, pid), map[string]string{"Seccomp": tt.want})
			// The filtered init still serves as the pod's PID 1.
			id := runContainer(t, a, p, ctrConfig("probe", env.images.busybox, withCommand("true")))
			if ex := waitExited(t, a, id, 30*time.Second); ex.ExitCode != 0 {
				t.Errorf("container in the filtered pod exited %d: %s", ex.ExitCode, ex.Message)
			}
		})
	}
}
