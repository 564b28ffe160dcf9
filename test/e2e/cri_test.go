package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// podOption and ctrOption build CRI configs the way containerd's integration
// tests do: a sane default, then options for what a test cares about.
type podOption func(*runtimeapi.PodSandboxConfig)
type ctrOption func(*runtimeapi.ContainerConfig)

func uid() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func podConfig(t *testing.T, name string, opts ...podOption) *runtimeapi.PodSandboxConfig {
	cfg := &runtimeapi.PodSandboxConfig{
		Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "e2e", Uid: uid()},
		Hostname:     name,
		LogDirectory: t.TempDir(),
		Labels:       map[string]string{"test": t.Name()},
		Linux: &runtimeapi.LinuxPodSandboxConfig{
			SecurityContext: &runtimeapi.LinuxSandboxSecurityContext{
				NamespaceOptions: &runtimeapi.NamespaceOption{Pid: runtimeapi.NamespaceMode_CONTAINER},
			},
		},
	}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

func withPodPID(mode runtimeapi.NamespaceMode) podOption {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.SecurityContext.NamespaceOptions.Pid = mode }
}

func withDNS(servers, searches []string) podOption {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.DnsConfig = &runtimeapi.DNSConfig{Servers: servers, Searches: searches, Options: []string{"ndots:5"}}
	}
}

func withCgroupParent(p string) podOption {
	return func(c *runtimeapi.PodSandboxConfig) { c.Linux.CgroupParent = p }
}

func ctrConfig(name, image string, opts ...ctrOption) *runtimeapi.ContainerConfig {
	cfg := &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: image},
		LogPath:  name + ".log",
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{}},
	}
	for _, o := range opts {
		o(cfg)
	}
	return cfg
}

func withCommand(args ...string) ctrOption {
	return func(c *runtimeapi.ContainerConfig) { c.Command = args }
}

func withShell(script string) ctrOption { return withCommand("/bin/sh", "-c", script) }

func withEnv(k, v string) ctrOption {
	return func(c *runtimeapi.ContainerConfig) {
		c.Envs = append(c.Envs, &runtimeapi.KeyValue{Key: k, Value: []byte(v)})
	}
}

func withMemoryLimit(bytes int64) ctrOption {
	return func(c *runtimeapi.ContainerConfig) { c.Linux.Resources.MemoryLimitInBytes = bytes }
}

// pod is a running sandbox that the test's cleanup stops and removes.
type pod struct {
	id  string
	cfg *runtimeapi.PodSandboxConfig
}

func runPod(t *testing.T, a *agent, cfg *runtimeapi.PodSandboxConfig) pod {
	t.Helper()
	return runPodOn(t, a, cfg, "")
}

// runPodOn runs the pod with a runtime handler ("" is the default).
func runPodOn(t *testing.T, a *agent, cfg *runtimeapi.PodSandboxConfig, handler string) pod {
	t.Helper()
	resp, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatalf("run pod %s: %v", cfg.Metadata.Name, err)
	}
	p := pod{id: resp.PodSandboxId, cfg: cfg}
	t.Cleanup(func() {
		ctx := ctxT(t)
		if _, err := a.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Errorf("cleanup: stop pod %s: %v", p.id, err)
		}
		if _, err := a.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id}); err != nil {
			t.Errorf("cleanup: remove pod %s: %v", p.id, err)
		}
	})
	return p
}

func createContainer(t *testing.T, a *agent, p pod, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	// As the kubelet does with imagePullPolicy IfNotPresent.
	if imageStatus(t, a, cfg.Image.Image) == nil {
		pull(t, a, cfg.Image.Image)
	}
	// The kubelet gives each container its pod's namespace modes.
	if cfg.Linux.SecurityContext == nil {
		cfg.Linux.SecurityContext = &runtimeapi.LinuxContainerSecurityContext{}
	}
	if cfg.Linux.SecurityContext.NamespaceOptions == nil {
		cfg.Linux.SecurityContext.NamespaceOptions = p.cfg.Linux.SecurityContext.NamespaceOptions
	}
	resp, err := a.rt.CreateContainer(ctxT(t), &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: p.cfg})
	if err != nil {
		t.Fatalf("create container %s: %v", cfg.Metadata.Name, err)
	}
	return resp.ContainerId
}

func startContainer(t *testing.T, a *agent, id string) {
	t.Helper()
	if _, err := a.rt.StartContainer(ctxT(t), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatalf("start container %s: %v", id, err)
	}
}

// runContainer creates and starts a container in p.
func runContainer(t *testing.T, a *agent, p pod, cfg *runtimeapi.ContainerConfig) string {
	t.Helper()
	id := createContainer(t, a, p, cfg)
	startContainer(t, a, id)
	return id
}

func containerStatus(t *testing.T, a *agent, id string) *runtimeapi.ContainerStatus {
	t.Helper()
	resp, err := a.rt.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("container status %s: %v", id, err)
	}
	return resp.Status
}

// waitExited polls until the container has exited and returns its status.
func waitExited(t *testing.T, a *agent, id string, timeout time.Duration) *runtimeapi.ContainerStatus {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		st := containerStatus(t, a, id)
		if st.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("container %s still %s after %s", id, st.State, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// logLine is one parsed line of a CRI log file.
type logLine struct {
	time    time.Time
	stream  string
	partial bool
	content string
}

func readLog(t *testing.T, path string) []logLine {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("open log: %v", err)
	}
	defer f.Close()
	var out []logLine
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 {
			t.Fatalf("malformed CRI log line %q", sc.Text())
		}
		ts, err := time.Parse(time.RFC3339Nano, parts[0])
		if err != nil {
			t.Fatalf("log line %q: bad timestamp: %v", sc.Text(), err)
		}
		if parts[1] != "stdout" && parts[1] != "stderr" || parts[2] != "P" && parts[2] != "F" {
			t.Fatalf("log line %q: bad stream or tag", sc.Text())
		}
		l := logLine{time: ts, stream: parts[1], partial: parts[2] == "P"}
		if len(parts) == 4 {
			l.content = parts[3]
		}
		out = append(out, l)
	}
	return out
}

// logText joins the full lines of one stream.
func logText(lines []logLine, stream string) string {
	var b strings.Builder
	for _, l := range lines {
		if l.stream != stream {
			continue
		}
		b.WriteString(l.content)
		if !l.partial {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func logPath(p pod, cfg *runtimeapi.ContainerConfig) string {
	return filepath.Join(p.cfg.LogDirectory, cfg.LogPath)
}

// waitLog polls until the container's log contains want.
func waitLog(t *testing.T, path, want string, timeout time.Duration) string {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		b, _ := os.ReadFile(path)
		if strings.Contains(string(b), want) {
			return string(b)
		}
		if time.Now().After(deadline) {
			t.Fatalf("log %s lacks %q after %s:\n%s", path, want, timeout, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func must(t *testing.T, err error, what string, args ...any) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", fmt.Sprintf(what, args...), err)
	}
}
