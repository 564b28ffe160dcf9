package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The kubelet's pods with hostUsers: false: one uid and one gid range, container root mapped
// to an unprivileged host range of 65536 ids.
const usernsHostID = 100000

func idMapping(container, host, length uint32) *runtimeapi.IDMapping {
	return &runtimeapi.IDMapping{ContainerId: container, HostId: host, Length: length}
}

func kubeletUserNS() *runtimeapi.UserNamespace {
	return &runtimeapi.UserNamespace{
		Mode: runtimeapi.NamespaceMode_POD,
		Uids: []*runtimeapi.IDMapping{idMapping(0, usernsHostID, 65536)},
		Gids: []*runtimeapi.IDMapping{idMapping(0, usernsHostID, 65536)},
	}
}

func withUserNS(u *runtimeapi.UserNamespace) podOption {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.NamespaceOptions.UsernsOptions = u }
}

func withHostPathMount(host, container string) ctrOption {
	return func(c *runtimeapi.ContainerConfig) {
		c.Mounts = append(c.Mounts, &runtimeapi.Mount{HostPath: host, ContainerPath: container})
	}
}

// mountsUnder lists the host's mount points at or below dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			out = append(out, f[4])
		}
	}
	return out
}

func statOwner(t *testing.T, path string) (uint32, uint32) {
	t.Helper()
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Uid, st.Gid
}

func TestUserNSStatusAdvertises(t *testing.T) {
	resp, err := env.shared.rt.Status(ctxT(t), &runtimeapi.StatusRequest{})
	must(t, err, "status")
	if len(resp.RuntimeHandlers) == 0 || !resp.RuntimeHandlers[0].GetFeatures().GetUserNamespaces() {
		t.Fatalf("runtime handlers %v do not advertise user_namespaces", resp.RuntimeHandlers)
	}
}

func TestUserNSInvalidMappings(t *testing.T) {
	a := env.shared
	mod := func(f func(u *runtimeapi.UserNamespace)) *runtimeapi.UserNamespace {
		u := kubeletUserNS()
		f(u)
		return u
	}
	tests := []struct {
		name   string
		userns *runtimeapi.UserNamespace
		opts   []podOption
	}{
		{name: "two uid ranges", userns: mod(func(u *runtimeapi.UserNamespace) {
			u.Uids = append(u.Uids, idMapping(65536, 300000, 100))
		})},
		{name: "two gid ranges", userns: mod(func(u *runtimeapi.UserNamespace) {
			u.Gids = []*runtimeapi.IDMapping{idMapping(0, usernsHostID, 10), idMapping(10, 300000, 10)}
		})},
		{name: "root not mapped", userns: mod(func(u *runtimeapi.UserNamespace) {
			u.Uids = []*runtimeapi.IDMapping{idMapping(1, usernsHostID, 65536)}
		})},
		{name: "mode CONTAINER", userns: mod(func(u *runtimeapi.UserNamespace) { u.Mode = runtimeapi.NamespaceMode_CONTAINER })},
		{name: "mode TARGET", userns: mod(func(u *runtimeapi.UserNamespace) { u.Mode = runtimeapi.NamespaceMode_TARGET })},
		{name: "host network", userns: kubeletUserNS(), opts: []podOption{withHostNetwork()}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := podConfig(t, "userns-bad", append(tt.opts, withUserNS(tt.userns))...)
			resp, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				_, _ = a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId})
				_, _ = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
				t.Fatal("RunPodSandbox succeeded")
			}
			if status.Code(err) != codes.InvalidArgument {
				t.Fatalf("RunPodSandbox = %v, want InvalidArgument", err)
			}
		})
	}
}

func TestUserNSPod(t *testing.T) {
	a := env.shared
	// A root-owned host directory, as kubelet volumes are.
	hostDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(hostDir, "f"), []byte("host\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg := podConfig(t, "userns", withUserNS(kubeletUserNS()), withPodPID(runtimeapi.NamespaceMode_POD))
	resp, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
	must(t, err, "run pod")
	p := pod{id: resp.PodSandboxId, cfg: cfg}
	removed := false
	removePod := func() {
		if _, err := a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Errorf("stop pod: %v", err)
		}
		if _, err := a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Errorf("remove pod: %v", err)
		}
		removed = true
	}
	t.Cleanup(func() {
		if !removed {
			removePod()
		}
	})
	pinDir := filepath.Join(a.state, "netns", p.id)
	if m := mountsUnder(t, pinDir); !contains(m, filepath.Join(pinDir, "user")) {
		t.Errorf("user namespace not pinned in %s: %v", pinDir, m)
	}

	script := strings.Join([]string{
		"cat /proc/self/uid_map", "cat /proc/self/gid_map", "id -u", "id -g",
		"echo made-inside > /newfile",
		"stat -c 'data %u:%g' /data/f",
		"echo from-container > /data/fromctr",
		"stat -c 'root %u:%g' /",
		"stat -c 'etc %u:%g' /etc/passwd",
		"stat -c 'pid1 %u' /proc/1",
	}, "; ")
	c := ctrConfig("userns", env.images.busybox, withShell(script), withHostPathMount(hostDir, "/data"))
	id := runContainer(t, a, p, c)
	st := waitExited(t, a, id, 30*time.Second)
	lines := readLog(t, logPath(p, c))
	out := logText(lines, "stdout")
	if st.ExitCode != 0 {
		t.Fatalf("container exited %d: stdout %q stderr %q", st.ExitCode, out, logText(lines, "stderr"))
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		got = append(got, strings.Join(strings.Fields(l), " "))
	}
	want := []string{
		"0 100000 65536", "0 100000 65536", // the pod's mappings
		"0", "0", // root inside
		"data 0:0", // the root-owned host dir is idmapped to the container's root
		"root 0:0", // the overlay root belongs to container root
		"etc 0:0",  // and so do the image's root-owned files (idmapped lower layers)
		"pid1 0",   // the pod init runs as the pod's root
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("inside the container:\n got %q\nwant %q", got, want)
	}

	// What container root wrote lands with host ids of its range in the writable layer, and
	// with its own ids through the idmapped host mount.
	var upperFile string
	_ = filepath.Walk(filepath.Join(a.root, "containers", id), func(path string, info os.FileInfo, err error) error {
		if err == nil && info.Name() == "newfile" {
			upperFile = path
		}
		return nil
	})
	if upperFile == "" {
		t.Fatalf("newfile not found under %s", filepath.Join(a.root, "containers", id))
	}
	if uid, gid := statOwner(t, upperFile); uid != usernsHostID || gid != usernsHostID {
		t.Errorf("%s is owned by %d:%d on the host, want %d:%d", upperFile, uid, gid, usernsHostID, usernsHostID)
	}
	if uid, gid := statOwner(t, filepath.Join(hostDir, "fromctr")); uid != 0 || gid != 0 {
		t.Errorf("file written through the idmapped host mount is %d:%d on the host, want 0:0", uid, gid)
	}

	stagingDir := filepath.Join(a.state, "containers", id)
	if m := mountsUnder(t, stagingDir); len(m) < 2 {
		t.Errorf("want the rootfs and idmapped layer mounts under %s, got %v", stagingDir, m)
	}
	removePod()
	for _, dir := range []string{pinDir, stagingDir} {
		if m := mountsUnder(t, dir); len(m) > 0 {
			t.Errorf("left mounted after the pod was removed: %v", m)
		}
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// A pod user namespace survives an agent crash, and removing the pod afterwards still releases
// every pin and idmapped layer mount. Containers with their own pid namespace and a non-root
// user work in it too.
func TestUserNSAgentRestart(t *testing.T) {
	a := newAgent(t, agentOptions{})
	p := runPod(t, a, podConfig(t, "userns-restart", withUserNS(kubeletUserNS())))
	c := ctrConfig("worker", env.images.busybox, withShell("id -u; cat /proc/self/uid_map; echo ready; sleep 3600"),
		func(c *runtimeapi.ContainerConfig) {
			c.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{RunAsUser: &runtimeapi.Int64Value{Value: 1000}}
		})
	id := runContainer(t, a, p, c)
	waitLog(t, logPath(p, c), "ready", 30*time.Second)
	out := logText(readLog(t, logPath(p, c)), "stdout")
	if fields := strings.Fields(out); len(fields) < 4 || fields[0] != "1000" || strings.Join(fields[1:4], " ") != "0 100000 65536" {
		t.Errorf("container output %q, want uid 1000 and the pod's mapping", out)
	}

	// An exec'd process joins the container's user namespace too.
	ex, err := a.rt.ExecSync(ctxT(t), &runtimeapi.ExecSyncRequest{ContainerId: id, Cmd: []string{"sh", "-c", "id -u; cat /proc/self/uid_map"}, Timeout: 10})
	must(t, err, "exec sync")
	if got := strings.Join(strings.Fields(string(ex.Stdout)), " "); ex.ExitCode != 0 || got != "1000 0 100000 65536" {
		t.Errorf("exec: exit %d stdout %q, want uid 1000 in the pod's mapping", ex.ExitCode, got)
	}

	must(t, a.kill9(), "kill agent")
	must(t, a.start(), "restart agent")
	if st := containerStatus(t, a, id); st.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
		t.Errorf("container after restart: %s", st.State)
	}
	_, err = a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "stop pod")
	_, err = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "remove pod")
	for _, dir := range []string{filepath.Join(a.state, "netns"), filepath.Join(a.state, "containers")} {
		if m := mountsUnder(t, dir); len(m) > 0 {
			t.Errorf("left mounted after the pod was removed: %v", m)
		}
	}
}
