package kubelet_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/test/e2e/agentproc"
)

// kubelet is a standalone kubelet process: no kubeconfig, so no API server;
// it runs the static pods in manifests and serves its view on readOnlyPort.
type kubelet struct {
	dir       string // everything of this kubelet: config, root-dir, certs, logs, manifests
	manifests string // staticPodPath
	rootDir   string
	podLogs   string
	logPath   string
	readOnly  int // readOnlyPort: GET /pods without authentication
	cmd       *exec.Cmd
	done      chan error
}

func startKubelet(sock string) (*kubelet, error) {
	dir, err := os.MkdirTemp("/var/lib", "berth-kubelet-e2e-kubelet-")
	if err != nil {
		return nil, err
	}
	k := &kubelet{
		dir: dir, manifests: filepath.Join(dir, "manifests"), rootDir: filepath.Join(dir, "root"),
		podLogs: filepath.Join(dir, "pods-logs"), logPath: filepath.Join(dir, "kubelet.log"),
	}
	if err := k.start(sock); err != nil {
		k.stopAndClean()
		return nil, err
	}
	return k, nil
}

func (k *kubelet) start(sock string) error {
	for _, d := range []string{k.manifests, k.rootDir, k.podLogs, filepath.Join(k.dir, "volume-plugins")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	ports, err := freePorts(3)
	if err != nil {
		return err
	}
	k.readOnly = ports[0]
	resolv := filepath.Join(k.dir, "resolv.conf")
	if err := os.WriteFile(resolv, []byte("nameserver 127.0.0.1\nsearch berth.test\n"), 0o644); err != nil {
		return err
	}
	cfgPath := filepath.Join(k.dir, "kubelet-config.json")
	cfg, err := json.MarshalIndent(k.config(sock, resolv, ports), "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(cfgPath, cfg, 0o644); err != nil {
		return err
	}
	logf, err := os.OpenFile(k.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	// No --kubeconfig: standalone mode, static pods only.
	k.cmd = exec.Command(env.kubeletBin,
		"--config", cfgPath,
		"--hostname-override", nodeName,
		"--root-dir", k.rootDir,
		"--cert-dir", filepath.Join(k.dir, "pki"),
		"-v", "2",
	)
	k.cmd.Stdout, k.cmd.Stderr = logf, logf
	k.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := k.cmd.Start(); err != nil {
		return fmt.Errorf("start kubelet: %w", err)
	}
	k.done = make(chan error, 1)
	go func() { k.done <- k.cmd.Wait() }()
	if err := k.waitHealthy(ports[2]); err != nil {
		return err
	}
	return k.checkDriver()
}

// checkDriver checks that the kubelet took its cgroup driver from berth's RuntimeConfig, and
// that it is the suite's: a kubelet falling back to its own config would hide a berth that
// reports the wrong driver. The kubelet logs the driver before it serves /healthz.
func (k *kubelet) checkDriver() error {
	const msg = "Using cgroup driver setting received from the CRI runtime"
	want := fmt.Sprintf("cgroupDriver=%q", env.driver)
	lines := k.logLines(msg)
	for _, l := range lines {
		if strings.Contains(l, want) {
			return nil
		}
	}
	return fmt.Errorf("the kubelet did not take cgroup driver %s from berth's RuntimeConfig (log lines %q):\n%s",
		env.driver, lines, agentproc.Tail(k.logPath, 30))
}

// config is the KubeletConfiguration for this machine: berth's cgroup driver (systemd on a
// systemd node; the kubelet takes berth's from RuntimeConfig anyway, see checkDriver), no swap
// check, loopback only, and nothing that evicts pods or collects images because the disk
// happens to be busy.
func (k *kubelet) config(sock, resolv string, ports []int) map[string]any {
	cfg := map[string]any{
		"apiVersion":                    "kubelet.config.k8s.io/v1beta1",
		"kind":                          "KubeletConfiguration",
		"containerRuntimeEndpoint":      "unix://" + sock,
		"imageServiceEndpoint":          "unix://" + sock,
		"staticPodPath":                 k.manifests,
		"fileCheckFrequency":            "2s",
		"syncFrequency":                 "10s",
		"address":                       "127.0.0.1",
		"port":                          ports[1],
		"readOnlyPort":                  ports[0],
		"healthzBindAddress":            "127.0.0.1",
		"healthzPort":                   ports[2],
		"podLogsDir":                    k.podLogs,
		"volumePluginDir":               filepath.Join(k.dir, "volume-plugins"),
		"resolvConf":                    resolv,
		"cgroupDriver":                  env.driver,
		"cgroupsPerQOS":                 true,
		"cgroupRoot":                    "/",
		"failSwapOn":                    false,
		"enforceNodeAllocatable":        []string{},
		"localStorageCapacityIsolation": false,
		"imageGCHighThresholdPercent":   100,
		"imageGCLowThresholdPercent":    99,
		// An explicit map replaces the defaults (nodefs/imagefs percentages) that
		// would evict the test pods on a nearly full disk.
		"evictionHard":        map[string]string{"memory.available": "1Mi"},
		"serializeImagePulls": false,
		"registerNode":        false,
		// Standalone only: the kubelet hands this to berth in UpdateRuntimeConfig.
		"podCIDR": kubeletSubnet,
		"authentication": map[string]any{
			"anonymous": map[string]any{"enabled": true},
			"webhook":   map[string]any{"enabled": false},
		},
		"authorization": map[string]any{"mode": "AlwaysAllow"},
	}
	// The kubelet refuses cgroup v1 by default: allow it on a v1 host only, so that a v2
	// node (the VM) runs with the kubelet's own default.
	if !cgroupV2() {
		cfg["failCgroupV1"] = false
	}
	return cfg
}

// cgroupV2 reports a unified hierarchy at /sys/fs/cgroup.
func cgroupV2() bool {
	var st unix.Statfs_t
	return unix.Statfs("/sys/fs/cgroup", &st) == nil && st.Type == unix.CGROUP2_SUPER_MAGIC
}

// waitHealthy waits for /healthz; a kubelet that exits early fails fast with its log.
func (k *kubelet) waitHealthy(port int) error {
	url := fmt.Sprintf("http://127.0.0.1:%d/healthz", port)
	deadline := time.Now().Add(90 * time.Second)
	for {
		select {
		case err := <-k.done:
			k.done <- err
			return fmt.Errorf("kubelet exited (%v):\n%s", err, agentproc.Tail(k.logPath, 30))
		default:
		}
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubelet not healthy on %s after 90s (%v):\n%s", url, err, agentproc.Tail(k.logPath, 30))
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (k *kubelet) stop() error {
	if k.cmd == nil || k.cmd.Process == nil {
		return nil
	}
	_ = k.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-k.done:
		return nil
	case <-time.After(20 * time.Second):
		_ = k.cmd.Process.Kill()
		<-k.done
		return errors.New("kubelet ignored SIGTERM for 20s")
	}
}

// stopAndClean stops the kubelet and removes what it leaves behind by design:
// its directories and the /kubepods cgroup hierarchy.
func (k *kubelet) stopAndClean() {
	if err := k.stop(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/kubelet:", err)
	}
	saveLog(k.logPath, "kubelet.log")
	// The kubelet bind-mounts its root dir onto itself (rshared) and leaves it.
	_ = unix.Unmount(k.rootDir, unix.MNT_DETACH)
	for _, err := range removeKubepods() {
		fmt.Fprintln(os.Stderr, "e2e/kubelet:", err)
	}
	if err := agentproc.RemoveAll(k.dir); err != nil {
		fmt.Fprintln(os.Stderr, "e2e/kubelet:", err)
	}
}

// pods returns the kubelet's own view of its pods: GET /pods on the read-only port.
func (k *kubelet) pods() ([]pod, error) {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/pods", k.readOnly))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /pods: %s: %s", resp.Status, body)
	}
	var list struct {
		Items []pod `json:"items"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("decode /pods: %w", err)
	}
	return list.Items, nil
}

// pod returns the kubelet's view of the static pod named name (without the node suffix).
func (k *kubelet) pod(name string) (pod, bool, error) {
	pods, err := k.pods()
	if err != nil {
		return pod{}, false, err
	}
	for _, p := range pods {
		if p.Metadata.Name == staticName(name) {
			return p, true, nil
		}
	}
	return pod{}, false, nil
}

// logLines returns the kubelet log lines that contain every one of the words.
func (k *kubelet) logLines(words ...string) []string {
	b, _ := os.ReadFile(k.logPath)
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		match := true
		for _, w := range words {
			if !strings.Contains(line, w) {
				match = false
				break
			}
		}
		if match && line != "" {
			out = append(out, line)
		}
	}
	return out
}

// criErrors are the kubelet's error lines about failed runtime calls.
func (k *kubelet) criErrors() []string {
	var out []string
	for _, l := range k.logLines("rpc error") {
		if strings.HasPrefix(l, "E") {
			out = append(out, l)
		}
	}
	return out
}

// staticName is the name the kubelet gives a static pod: <name>-<node>.
func staticName(name string) string { return name + "-" + nodeName }

func freePorts(n int) ([]int, error) {
	var ports []int
	var lns []net.Listener
	defer func() {
		for _, l := range lns {
			l.Close()
		}
	}()
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// saveLog copies a log to $BERTH_E2E_LOGDIR, when set, before its directory goes.
func saveLog(path, name string) {
	dir := os.Getenv("BERTH_E2E_LOGDIR")
	if dir == "" {
		return
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return
	}
	_ = os.MkdirAll(dir, 0o755)
	_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
}
