package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/test/e2e/agentproc"
	"github.com/berth-runtime/berth/test/fixture"
)

// rootImageSize is the loop-mounted ext4 that holds the agent's root. Small: the host's root
// ext4 has no journal and skips inodes freed in the last minute, so a big image file would
// linger as used space after the run.
const rootImageSize = "384M"

// env is everything the driver set up; undo tears it down in reverse, even on failure.
type env struct {
	work, mnt, image, logs  string
	binDir, confDir         string
	control                 string // the fault plugin's mode file
	bridge, subnet, netName string
	berth, shim             string
	reg                     *fixture.Registry
	proxy                   *faultProxy
	busybox                 string // busybox through the proxy
	agent                   *agentHandle
	undo                    agentproc.Undo
	// keepLog, when set (the run failed), is where the agent's log is copied at teardown.
	keepLog string
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// setup builds (or takes) the binaries, the loop filesystem, the registry and its fault
// proxy, the CNI chain with the fault plugin, and starts the agent.
func setup(moduleRoot string) (*env, error) {
	e := &env{}
	var err error
	if e.berth, e.shim, err = agentproc.Binaries(&e.undo, moduleRoot); err != nil {
		return e, err
	}
	if e.work, err = os.MkdirTemp("/var/tmp", "berth-chaos-"); err != nil {
		return e, err
	}
	e.undo.Add(func() { _ = agentproc.RemoveAll(e.work) })
	e.mnt, e.image, e.logs = filepath.Join(e.work, "mnt"), filepath.Join(e.work, "root.ext4"), filepath.Join(e.work, "logs")
	e.binDir, e.confDir, e.control = filepath.Join(e.work, "cni-bin"), filepath.Join(e.work, "cni-conf"), filepath.Join(e.work, "cni-mode")
	for _, d := range []string{e.mnt, e.logs, e.binDir, e.confDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return e, err
		}
	}
	if err := e.mountRoot(); err != nil {
		return e, err
	}
	if err := e.startRegistry(); err != nil {
		return e, err
	}
	if err := e.installPlugin(); err != nil {
		return e, err
	}
	return e, e.startAgent()
}

// mountRoot makes the small ext4 (no reserved blocks, so that root fills it too) and mounts it.
func (e *env) mountRoot() error {
	if err := run("truncate", "-s", rootImageSize, e.image); err != nil {
		return err
	}
	if err := run("mkfs.ext4", "-q", "-F", "-m", "0", e.image); err != nil {
		return err
	}
	if err := run("mount", "-o", "loop", e.image, e.mnt); err != nil {
		return err
	}
	e.undo.Add(func() {
		// mount -o loop sets autoclear: the loop device goes with the last unmount.
		if err := syscall.Unmount(e.mnt, 0); err != nil {
			fmt.Fprintln(os.Stderr, "chaos: unmount root fs:", err)
			_ = syscall.Unmount(e.mnt, syscall.MNT_DETACH)
		}
	})
	return nil
}

func (e *env) startRegistry() error {
	reg, err := fixture.StartRegistry("127.0.0.1:0")
	if err != nil {
		return err
	}
	e.reg = reg
	e.undo.Add(func() { reg.Close() })
	img, err := new(fixture.Builder).Busybox()
	if err != nil {
		return err
	}
	if _, err := reg.Push("berth/busybox:latest", img); err != nil {
		return err
	}
	if e.proxy, err = startProxy(reg.URL()); err != nil {
		return err
	}
	e.undo.Add(e.proxy.close)
	e.busybox = e.proxy.addr() + "/berth/busybox:latest"
	return nil
}

// pushPadded pushes busybox with one extra layer of size bytes under name.
func (e *env) pushPadded(name string, size int64) (string, error) {
	img, err := new(fixture.Builder).Busybox(fixture.WithPadding(1, size))
	if err != nil {
		return "", err
	}
	if _, err := e.reg.Push(name, img); err != nil {
		return "", err
	}
	return e.proxy.addr() + "/" + name, nil
}

// installPlugin copies this binary into the CNI bin dir as the fault plugin.
func (e *env) installPlugin() error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	src, err := os.Open(self)
	if err != nil {
		return err
	}
	defer src.Close()
	dst, err := os.OpenFile(filepath.Join(e.binDir, faultPluginName), os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(dst, src); err != nil {
		dst.Close()
		return err
	}
	if err := dst.Close(); err != nil {
		return err
	}
	return e.setPlugin(pluginOK)
}

func (e *env) setPlugin(mode string) error { return os.WriteFile(e.control, []byte(mode), 0o644) }

func (e *env) startAgent() error {
	n := os.Getpid() % 200
	e.bridge, e.subnet, e.netName = fmt.Sprintf("btechaos%d", n), fmt.Sprintf("10.228.%d.0/24", n), fmt.Sprintf("chaos%d", n)
	a, err := agentproc.New(agentproc.Options{
		Bin: e.berth, ShimBin: e.shim, RootPrefix: "berth-chaos-", StatePrefix: "bch-",
		RootParent: e.mnt, Bridge: e.bridge, Config: e.agentConfig,
	})
	if err != nil {
		return err
	}
	e.agent = newAgentHandle(a)
	e.undo.Add(e.cleanAgent)
	return nil
}

// agentConfig writes the CNI chain (bridge, portmap, the fault plugin) and the TOML.
func (e *env) agentConfig(root, state string) (string, error) {
	list := map[string]any{
		"cniVersion": "1.0.0", "name": e.netName,
		"plugins": []any{
			map[string]any{"type": "bridge", "bridge": e.bridge, "isGateway": true, "ipMasq": true, "hairpinMode": true,
				"ipam": map[string]any{"type": "host-local", "ranges": [][]map[string]string{{{"subnet": e.subnet}}},
					"routes": []map[string]string{{"dst": "0.0.0.0/0"}}, "dataDir": filepath.Join(state, "cni", "networks")}},
			map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true},
			map[string]any{"type": faultPluginName, "control": e.control},
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(e.confDir, "10-chaos.conflist"), b, 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf(`[network]
cni_conf_dir = %q
cni_bin_dirs = [%q, "/opt/cni/bin"]
default_subnet = %q
default_bridge = %q

[images]
pull_progress_timeout = "3s"

[nri]
enable = false
socket_path = %q
`, e.confDir, e.binDir, e.subnet, e.bridge, filepath.Join(state, "nri.sock")), nil
}

// cleanAgent removes every pod, stops the agent, releases anything left with the doctor,
// kills stray shims, and removes the agent's bridge and directories.
func (e *env) cleanAgent() {
	a := e.agent.a
	_ = e.agent.ensureUp()
	rt := e.agent.rt()
	if rt != nil {
		removeAllPods(rt)
	}
	_ = a.Stop()
	if out, err := exec.Command(e.berth, append(append([]string{}, a.Args...), "doctor", "--shared-node", "--fix")...).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "chaos: teardown doctor --fix: %v\n%s\n", err, out)
	}
	for _, pid := range processesOf(a.State) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	if e.keepLog != "" {
		if b, err := os.ReadFile(a.LogPath); err == nil && os.WriteFile(e.keepLog, b, 0o644) == nil {
			fmt.Fprintln(os.Stderr, "chaos: agent log kept at", e.keepLog)
		}
	}
	e.removeRules()
	if err := a.Clean(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: clean agent:", err)
	}
	// The default pod cgroup parent is shared with other agents: rmdir only if empty.
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth")
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
}

// ownRule reports whether an iptables-save line is one of this run's network: the plugins
// comment every rule with the network name, which is unique to the run.
func (e *env) ownRule(line string) bool {
	return strings.Contains(line, fmt.Sprintf(`name: \"%s\"`, e.netName))
}

// removeRules deletes iptables rules and chains of this run's network still there at
// teardown (counted as leaks before): the host must be left as found.
func (e *env) removeRules() {
	if e.netName == "" {
		return
	}
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			continue
		}
		chains := map[string]bool{}
		for _, line := range strings.Split(string(out), "\n") {
			if !strings.HasPrefix(line, "-A ") || !e.ownRule(line) {
				continue
			}
			f := strings.Fields(line)
			if strings.HasPrefix(f[1], "CNI-") {
				chains[f[1]] = true
				continue
			}
			// A rule in a shared chain: delete it by its spec.
			_ = exec.Command("sh", "-c", "iptables -t "+table+" -D "+line[3:]).Run()
		}
		for c := range chains {
			_ = exec.Command("sh", "-c", fmt.Sprintf("iptables-save -t %s | grep -- '-j %s' | sed 's/^-A /-D /' | while read -r r; do eval iptables -t %s $r; done", table, c, table)).Run()
			_ = run("iptables", "-t", table, "-F", c)
			_ = run("iptables", "-t", table, "-X", c)
		}
	}
}

// processesOf lists the agent's leftover processes: those whose command line names its
// state directory (shims) and those working in it (pod inits, whose command line names
// nothing but whose working directory is their shim's).
func processesOf(state string) []int {
	out := processesMentioning(state)
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		var pid int
		if _, err := fmt.Sscan(en.Name(), &pid); err != nil || slices.Contains(out, pid) {
			continue
		}
		cwd, err := os.Readlink(filepath.Join("/proc", en.Name(), "cwd"))
		if err == nil && strings.HasPrefix(cwd, state+"/") && !isZombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

// processesMentioning lists pids whose command line contains s.
func processesMentioning(s string) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, en := range ents {
		var pid int
		if _, err := fmt.Sscan(en.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", en.Name(), "cmdline"))
		if err == nil && strings.Contains(string(b), s) && !isZombie(pid) {
			out = append(out, pid)
		}
	}
	return out
}

func isZombie(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i < 0 || i+2 >= len(b) || b[i+2] == 'Z'
}

// agentHandle guards the agent's clients, which each restart replaces.
type agentHandle struct {
	a   *agentproc.Agent
	mu  sync.RWMutex
	rtc runtimeapi.RuntimeServiceClient
	imc runtimeapi.ImageServiceClient
	up  bool
}

func newAgentHandle(a *agentproc.Agent) *agentHandle {
	return &agentHandle{a: a, rtc: a.RT, imc: a.Img, up: true}
}

func (h *agentHandle) rt() runtimeapi.RuntimeServiceClient {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.rtc
}

func (h *agentHandle) img() runtimeapi.ImageServiceClient {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.imc
}

// kill sends SIGKILL to the agent. Only the killer goroutine and teardown call kill and
// launch, so the process fields of agentproc.Agent are never shared.
func (h *agentHandle) kill() error {
	h.mu.Lock()
	h.up = false
	h.mu.Unlock()
	return h.a.Kill9()
}

// launch starts the agent again, retrying while it cannot start (a full disk, say).
func (h *agentHandle) launch() error {
	var err error
	for i := 0; i < 10; i++ {
		if err = h.a.Launch(); err == nil {
			h.mu.Lock()
			h.rtc, h.imc, h.up = h.a.RT, h.a.Img, true
			h.mu.Unlock()
			return nil
		}
		_ = h.a.Kill9()
	}
	return err
}

func (h *agentHandle) ensureUp() error {
	h.mu.RLock()
	up := h.up
	h.mu.RUnlock()
	if up {
		return nil
	}
	return h.launch()
}

var errStopped = errors.New("stopped")
