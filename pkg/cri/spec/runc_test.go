package spec

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/shim"
)

// These tests run generated specs through berth's own shim (cmd/shim, built with -tags
// seccomp: libcontainer, as in production) and check each security setting from inside the
// container. They need root and the dynamic busybox of the host; nothing else.

// busyboxRootfs builds a minimal rootfs from the host's busybox and the libraries it links.
func busyboxRootfs(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("no busybox on the host")
	}
	root := t.TempDir()
	// Test temp dirs are 0700; a container root mapped to an unprivileged host id must still
	// reach its rootfs.
	for _, d := range []string{root, filepath.Dir(root)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Mount points exist beforehand: inside a user namespace runc cannot create them in
	// directories owned by host root.
	for _, d := range []string{"bin", "proc", "sys", "dev", "etc", "tmp", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	copyFile(t, bb, filepath.Join(root, "bin/busybox"), 0o755)
	out, err := exec.Command("ldd", bb).Output()
	if err != nil {
		t.Fatalf("ldd %s: %v", bb, err)
	}
	for _, lib := range regexp.MustCompile(`(/\S+\.so[.\d]*)`).FindAllString(string(out), -1) {
		copyFile(t, lib, filepath.Join(root, lib), 0o755)
	}
	// Hard links, as in the busybox image: masking a symlinked applet would mask busybox.
	for _, cmd := range []string{"sh", "cat", "grep", "id", "chmod", "touch", "ls", "wc", "head"} {
		if err := os.Link(filepath.Join(root, "bin/busybox"), filepath.Join(root, "bin", cmd)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

func copyFile(t *testing.T, src, dst string, mode os.FileMode) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, mode); err != nil {
		t.Fatal(err)
	}
}

// testShim is a real berth-shim serving one test's containers.
type testShim struct {
	c    *shim.Client
	logs string // directory of the containers' CRI logs
}

// startShim builds cmd/shim with the production build tags, starts it and shuts it down
// (killing it if it will not go) when the test ends.
func startShim(t *testing.T) *testShim {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "berth-shim")
	build := exec.Command("go", "build", "-tags", "seccomp", "-o", bin, "github.com/berth-runtime/berth/cmd/shim")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the shim: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := shim.Start(ctx, shim.StartOptions{
		Binary:      bin,
		SandboxID:   "spec-test",
		Dir:         filepath.Join(dir, "shim"),
		RuntimeRoot: filepath.Join(dir, "runc"),
	})
	if err != nil {
		t.Fatalf("start the shim: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := c.Shutdown(ctx); err != nil {
			t.Errorf("shut the shim down: %v", err)
			_ = syscall.Kill(c.Pid(), syscall.SIGKILL)
		}
		c.Close()
	})
	return &testShim{c: c, logs: t.TempDir()}
}

// run writes s into a fresh bundle, runs it to completion in the shim and returns what the
// container wrote (stdout and stderr, from its CRI log) and the error of any step.
func (sh *testShim) run(t *testing.T, rootfs string, s *specs.Spec) (string, error) {
	t.Helper()
	bundle := t.TempDir()
	s.Root.Path = rootfs
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	id := filepath.Base(s.Linux.CgroupsPath)
	logPath := filepath.Join(sh.logs, id+".log")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = sh.c.Kill(ctx, id, syscall.SIGKILL, true)
		_, _ = sh.c.Wait(ctx, id)
		if err := sh.c.Delete(ctx, id); err != nil {
			t.Errorf("delete container %s: %v", id, err)
		}
		removeTestCgroup(s.Linux.CgroupsPath)
	})
	if _, err := sh.c.Create(ctx, shim.CreateRequest{ID: id, Bundle: bundle, LogPath: logPath}); err != nil {
		return "", fmt.Errorf("create: %w", err)
	}
	if err := sh.c.Start(ctx, id); err != nil {
		return "", fmt.Errorf("start: %w", err)
	}
	st, err := sh.c.Wait(ctx, id)
	if err != nil {
		return "", fmt.Errorf("wait: %w", err)
	}
	out := logContent(t, logPath)
	if st.ExitCode != 0 {
		err = fmt.Errorf("exit code %d", st.ExitCode)
	}
	return out, err
}

// logContent joins the content of a CRI log's lines ("<time> <stream> <P|F> <content>").
func logContent(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("container log: %v", err)
	}
	var b strings.Builder
	for _, line := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 3 {
			continue
		}
		if len(f) == 4 {
			b.WriteString(f[3])
		}
		if f[2] == "F" {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// removeTestCgroup removes what runc may leave of a container cgroup in every v1 hierarchy.
func removeTestCgroup(p string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup/*", p))
	for _, d := range dirs {
		_ = os.Remove(d)
	}
}

// pinnedUserNamespace starts a process in a new user namespace with root mapped to host
// 100000 (65536 ids) and returns its /proc/<pid>/ns/user: what the agent pins for a pod.
func pinnedUserNamespace(t *testing.T) string {
	t.Helper()
	cmd := exec.Command("sleep", "300")
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  syscall.CLONE_NEWUSER,
		UidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GidMappings: []syscall.SysProcIDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start a user namespace holder: %v", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return fmt.Sprintf("/proc/%d/ns/user", cmd.Process.Pid)
}

// hostCapEff is this process's CapEff: what a privileged container gets.
func hostCapEff(t *testing.T) string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`CapEff:\s+([0-9a-f]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatal("no CapEff")
	}
	return string(m[1])
}

func TestRuncSecurityContexts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root")
	}
	rootfs := busyboxRootfs(t)
	sh := startShim(t)
	profile := filepath.Join(t.TempDir(), "block-chmod.json")
	if err := os.WriteFile(profile, []byte(blockChmod), 0o644); err != nil {
		t.Fatal(err)
	}
	host, err := CurrentCapabilities()
	if err != nil {
		t.Fatal(err)
	}
	volume := t.TempDir()
	if err := os.WriteFile(filepath.Join(volume, "old"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	status := "grep -E '^(Seccomp|CapEff|CapBnd|NoNewPrivs):' /proc/self/status; "

	type sbMod func(*SandboxInfo)
	tests := []struct {
		name    string
		sc      func(*runtimeapi.LinuxContainerSecurityContext)
		sb      sbMod
		user    specs.User
		mounts  []*runtimeapi.Mount
		script  string
		want    []string // regexps the combined output must match
		wantErr bool
	}{
		{
			name:   "runtime default seccomp",
			sc:     func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.Seccomp = &runtimeapi.SecurityProfile{} },
			script: status,
			want:   []string{`Seccomp:\s+2`, `CapEff:\s+00000000a80425fb`, `NoNewPrivs:\s+0`},
		},
		{
			name:   "unconfined by default",
			script: status,
			want:   []string{`Seccomp:\s+0`},
		},
		{
			name: "drop ALL",
			sc: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}}
			},
			script: status,
			want:   []string{`CapEff:\s+0000000000000000`, `CapBnd:\s+0000000000000000`},
		},
		{
			name: "drop ALL add NET_BIND_SERVICE",
			sc: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.Capabilities = &runtimeapi.Capability{DropCapabilities: []string{"ALL"}, AddCapabilities: []string{"NET_BIND_SERVICE"}}
			},
			script: status,
			want:   []string{`CapEff:\s+0000000000000400`},
		},
		{
			name: "localhost profile blocks chmod",
			sc: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.Seccomp = &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: profile}
			},
			script: status + "chmod 400 /tmp || echo chmod refused",
			want:   []string{`Seccomp:\s+2`, `Operation not permitted`, `chmod refused`},
		},
		{
			name: "hardened /proc and /sys",
			script: "echo keys $(cat /proc/keys | wc -c); echo firmware $(ls /sys/firmware | wc -l); " +
				"echo x > /proc/sys/kernel/hostname || echo sysctl refused; touch /sys/x || echo sys refused",
			want: []string{`keys 0\n`, `firmware 0\n`, `Read-only file system`, `sysctl refused`, `sys refused`},
		},
		{
			name: "masked and readonly paths given",
			sc: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.MaskedPaths = []string{"/bin/ls"}
				sc.ReadonlyPaths = []string{"/tmp"}
			},
			script: "ls /; touch /tmp/test",
			want:   []string{`ls: Permission denied`, `touch: /tmp/test: Read-only file system`},
		},
		{
			name:   "readonly rootfs",
			sc:     func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.ReadonlyRootfs = true },
			script: "touch /x || echo refused",
			want:   []string{`Read-only file system`, `refused`},
		},
		{
			name:   "non-root user with groups and no_new_privs",
			sc:     func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.NoNewPrivs = true },
			user:   specs.User{UID: 1000, GID: 1001, AdditionalGids: []uint32{1001, 2000}},
			script: status + "id",
			want:   []string{`uid=1000 gid=1001 groups=1001,2000`, `CapEff:\s+0000000000000000`, `NoNewPrivs:\s+1`},
		},
		{
			name: "privileged",
			sc:   func(sc *runtimeapi.LinuxContainerSecurityContext) { sc.Privileged = true },
			sb: func(sb *SandboxInfo) {
				sb.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Privileged: true}
			},
			script: status + "grep -E ' /sys (sysfs|cgroup)' /proc/mounts; echo firmware $(ls /sys/firmware | wc -l)",
			want:   []string{`Seccomp:\s+0`, `CapEff:\s+` + hostCapEff(t), `sysfs /sys sysfs rw`, `firmware [1-9]`},
		},
		{
			name: "user namespace",
			sc: func(sc *runtimeapi.LinuxContainerSecurityContext) {
				sc.NamespaceOptions.UsernsOptions = podUserns(idmap(0, 100000, 65536))
			},
			sb: func(sb *SandboxInfo) {
				sb.UserNSPath = pinnedUserNamespace(t)
				sb.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{
					NamespaceOptions: &runtimeapi.NamespaceOption{UsernsOptions: podUserns(idmap(0, 100000, 65536))},
				}
			},
			// The volume is owned by host root, as the kubelet creates it: through the
			// idmapped mount container root owns it and writes files that land as host root.
			mounts: []*runtimeapi.Mount{{ContainerPath: "/data", HostPath: volume}},
			script: "cat /proc/self/uid_map /proc/self/gid_map; id -u; ls -ln /data; touch /data/new && echo wrote",
			want:   []string{`(?m)^\s+0\s+100000\s+65536$`, `(?m)^0$`, `-rw-r--r--\s+1 0\s+0 .* old`, `wrote`},
		},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &runtimeapi.ContainerConfig{
				Metadata: &runtimeapi.ContainerMetadata{Name: "c"},
				Command:  []string{"/bin/sh", "-c", tt.script},
				Mounts:   tt.mounts,
				Linux: &runtimeapi.LinuxContainerConfig{SecurityContext: &runtimeapi.LinuxContainerSecurityContext{
					// Fresh namespaces of every kind: the test has no pod to join.
					NamespaceOptions: &runtimeapi.NamespaceOption{
						Network: runtimeapi.NamespaceMode_CONTAINER, Pid: runtimeapi.NamespaceMode_CONTAINER, Ipc: runtimeapi.NamespaceMode_CONTAINER,
					},
				}},
			}
			if tt.sc != nil {
				tt.sc(cfg.Linux.SecurityContext)
			}
			sb := SandboxInfo{ID: "sb", Hostname: "spec-test"}
			if tt.sb != nil {
				tt.sb(&sb)
			}
			s, err := Generate("c", cfg, sb, ImageConfig{}, Options{
				CgroupsPath:      fmt.Sprintf("/berth-spec-test-%d-%d", os.Getpid(), i),
				Users:            fakeUsers{user: tt.user},
				HostCapabilities: host,
				Devices:          HostDevices{},
			})
			wantErr(t, err, nil)
			out, err := sh.run(t, rootfs, s)
			if tt.mounts != nil {
				fi, err := os.Stat(filepath.Join(volume, "new"))
				if err != nil || fi.Sys().(*syscall.Stat_t).Uid != 0 {
					t.Errorf("file written through the idmapped mount: %v %+v", err, fi)
				}
			}
			for _, w := range tt.want {
				if !regexp.MustCompile(w).MatchString(out) {
					t.Errorf("output does not match %q (run: %v):\n%s", w, err, out)
				}
			}
		})
	}
}
