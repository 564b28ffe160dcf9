package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// testNet is a pod network private to one test: its own bridge and subnet, so that tests
// never share (or collide with) a real berth0 or each other's IP ranges.
type testNet struct {
	bridge, subnet string
	podCIDR        string // a second unused /24, for UpdateRuntimeConfig
	confDir        string // the agent's cni_conf_dir; empty means the default network
	binDir         string // extra plugin dir searched before /opt/cni/bin
}

var netSeq atomic.Int32

// newTestNet picks an unused bridge name and /24 and deletes the bridge when the test ends
// (the bridge plugin leaves it behind). Register it before the agent so that its cleanup runs
// after the agent's.
func newTestNet(t *testing.T) *testNet {
	t.Helper()
	for range 200 {
		n := (os.Getpid()*7 + int(netSeq.Add(1))) % 250
		tn := &testNet{
			bridge:  fmt.Sprintf("bte2e%d", n),
			subnet:  fmt.Sprintf("10.222.%d.0/24", n),
			podCIDR: fmt.Sprintf("10.223.%d.0/24", n),
			confDir: t.TempDir(),
			binDir:  t.TempDir(),
		}
		if _, err := netlink.LinkByName(tn.bridge); err == nil {
			continue // another run's
		}
		t.Cleanup(func() {
			if l, err := netlink.LinkByName(tn.bridge); err == nil {
				if err := netlink.LinkDel(l); err != nil {
					t.Errorf("delete bridge %s: %v", tn.bridge, err)
				}
			}
		})
		return tn
	}
	t.Fatal("no free test bridge name")
	return nil
}

// agent starts a private agent on this network.
func (tn *testNet) agent(t *testing.T) *agent {
	t.Helper()
	return newAgent(t, agentOptions{config: fmt.Sprintf(
		"[network]\ncni_conf_dir = %q\ncni_bin_dirs = [%q, \"/opt/cni/bin\"]\ndefault_subnet = %q\ndefault_bridge = %q\n",
		tn.confDir, tn.binDir, tn.subnet, tn.bridge)})
}

// writeConflist makes the agent's pod network a bridge network on the test bridge followed by
// extra plugins, with host-local's reservations in the agent's own state dir.
func (tn *testNet) writeConflist(t *testing.T, a *agent, name string, extra ...string) {
	t.Helper()
	plugins := []string{fmt.Sprintf(`{"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true,
		"ipam": {"type": "host-local", "ranges": [[{"subnet": %q}]], "dataDir": %q}}`,
		tn.bridge, tn.subnet, a.ipamDir())}
	plugins = append(plugins, extra...)
	conf := fmt.Sprintf(`{"cniVersion": "1.0.0", "name": %q, "plugins": [%s]}`, name, strings.Join(plugins, ","))
	if err := os.WriteFile(filepath.Join(tn.confDir, "10-"+name+".conflist"), []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakePlugin installs a CNI plugin that fails ADD with msg after sleeping delay, and succeeds
// at everything else, as a buggy or slow third-party plugin would.
func (tn *testNet) fakePlugin(t *testing.T, name, msg string, delay time.Duration) {
	t.Helper()
	script := fmt.Sprintf(`#!/bin/sh
case "$CNI_COMMAND" in
ADD)
	# Not holding stdout: a plugin killed on timeout must close its pipe, as a real one does.
	sleep %d >/dev/null 2>&1 </dev/null
	echo '{"cniVersion": "1.0.0", "code": 999, "msg": %q}'
	exit 1 ;;
VERSION)
	echo '{"cniVersion": "1.0.0", "supportedVersions": ["0.4.0", "1.0.0", "1.1.0"]}' ;;
esac
exit 0
`, int(delay.Seconds()), msg)
	if err := os.WriteFile(filepath.Join(tn.binDir, name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
}

// ipamDir is where the agent's host-local keeps its reservations: one file per IP.
func (a *agent) ipamDir() string { return filepath.Join(a.state, "cni", "networks") }

// reservedIPs counts host-local's IP files of every network of the agent.
func (a *agent) reservedIPs(t *testing.T) int {
	t.Helper()
	n := 0
	nets, _ := os.ReadDir(a.ipamDir())
	for _, d := range nets {
		files, _ := os.ReadDir(filepath.Join(a.ipamDir(), d.Name()))
		for _, f := range files {
			if net.ParseIP(f.Name()) != nil {
				n++
			}
		}
	}
	return n
}

// netnsPins counts the agent's pinned network namespaces (bind mounts under its state dir).
func (a *agent) netnsPins(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	prefix := filepath.Join(a.state, "netns") + "/"
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && strings.HasPrefix(f[4], prefix) && strings.HasSuffix(f[4], "/net") {
			n++
		}
	}
	return n
}

// veths counts the host's veth interfaces and those on the test's bridge, and returns the
// names of those that could be the test's: on its bridge or on none (other engineers' tests
// on this machine add veths to their own bridges while ours run).
func (tn *testNet) veths(t *testing.T) (all, onBridge int, ours map[string]bool) {
	t.Helper()
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	br, _ := netlink.LinkByName(tn.bridge)
	ours = map[string]bool{}
	for _, l := range links {
		if l.Type() != "veth" {
			continue
		}
		all++
		master := l.Attrs().MasterIndex
		if br != nil && master == br.Attrs().Index {
			onBridge++
		}
		if master == 0 || (br != nil && master == br.Attrs().Index) {
			ours[l.Attrs().Name] = true
		}
	}
	return all, onBridge, ours
}

// iptablesMentions reports the iptables rules (v4 nat and filter) that name id: the bridge
// plugin's masquerade rules and portmap's DNAT chains carry the container id in comments.
func iptablesMentions(t *testing.T, id string) []string {
	t.Helper()
	out, err := exec.Command("iptables-save").Output()
	if err != nil {
		t.Fatalf("iptables-save: %v", err)
	}
	var hits []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, id) {
			hits = append(hits, l)
		}
	}
	return hits
}

func podIP(t *testing.T, a *agent, id string) string {
	t.Helper()
	st, err := a.rt.PodSandboxStatus(ctxT(t), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	must(t, err, "pod status")
	ip := st.GetStatus().GetNetwork().GetIp()
	if net.ParseIP(ip) == nil {
		t.Fatalf("pod %s has no IP in its status: %v", id, st.GetStatus().GetNetwork())
	}
	return ip
}

func withPortMapping(hostIP string, hostPort, containerPort int32) podOption {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.PortMappings = append(c.PortMappings, &runtimeapi.PortMapping{
			Protocol: runtimeapi.Protocol_TCP, HostIp: hostIP, HostPort: hostPort, ContainerPort: containerPort,
		})
	}
}

func withHostNetwork() podOption {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.Network = runtimeapi.NamespaceMode_NODE
	}
}

// httpdScript serves body on port from the container with busybox httpd, in the foreground.
func httpdScript(port int, body string) string {
	return fmt.Sprintf("mkdir -p /www && echo %s > /www/index.html && exec httpd -f -p %d -h /www", body, port)
}

func freePort(t *testing.T) int32 {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return int32(l.Addr().(*net.TCPAddr).Port)
}

func TestNetworkPodToPod(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	server := runPod(t, a, podConfig(t, "server"))
	client := runPod(t, a, podConfig(t, "client"))
	serverIP, clientIP := podIP(t, a, server.id), podIP(t, a, client.id)
	_, subnet, _ := net.ParseCIDR(tn.subnet)
	if serverIP == clientIP || !subnet.Contains(net.ParseIP(serverIP)) || !subnet.Contains(net.ParseIP(clientIP)) {
		t.Fatalf("pod IPs %s and %s: want two distinct IPs in %s", serverIP, clientIP, tn.subnet)
	}
	runContainer(t, a, server, ctrConfig("httpd", env.images.busybox, withShell(httpdScript(8080, "hello-from-"+server.id[:8]))))

	// The client retries while the server starts; it prints its own address so we know the
	// traffic left from the client pod's interface. nc, not wget: the test image's busybox
	// wget crashes in its resolver.
	c := ctrConfig("wget", env.images.busybox, withShell(fmt.Sprintf(
		"ip -o -4 addr show eth0; for i in $(seq 50); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 %s 8080 | grep hello-from && exit 0; sleep 0.2; done; exit 1", serverIP)))
	id := runContainer(t, a, client, c)
	if ex := waitExited(t, a, id, time.Minute); ex.ExitCode != 0 {
		lines := readLog(t, logPath(client, c))
		t.Fatalf("wget from pod to pod exited %d:\n%s%s", ex.ExitCode, logText(lines, "stdout"), logText(lines, "stderr"))
	}
	out := logText(readLog(t, logPath(client, c)), "stdout")
	if !strings.Contains(out, "hello-from-"+server.id[:8]) || !strings.Contains(out, clientIP+"/24") {
		t.Fatalf("client output lacks the server's page or its own IP %s:\n%s", clientIP, out)
	}
}

func TestNetworkHostPort(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	port := freePort(t)
	p := runPod(t, a, podConfig(t, "web", withPortMapping("127.0.0.1", port, 80)))
	body := "hostport-" + p.id[:8]
	runContainer(t, a, p, ctrConfig("httpd", env.images.busybox, withShell(httpdScript(80, body))))
	if len(iptablesMentions(t, p.id)) == 0 {
		t.Errorf("no iptables rule names the pod %s: portmap and masquerade rules missing", p.id)
	}

	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	hc := &http.Client{Timeout: 2 * time.Second}
	var got string
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := hc.Get(url)
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			got = string(b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s through the hostPort: %v", url, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if strings.TrimSpace(got) != body {
		t.Fatalf("GET %s = %q, want %q", url, got, body)
	}

	_, err := a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "stop pod")
	if hits := iptablesMentions(t, p.id); len(hits) > 0 {
		t.Errorf("iptables rules of the stopped pod remain:\n%s", strings.Join(hits, "\n"))
	}
	if _, err := hc.Get(url); err == nil {
		t.Errorf("hostPort %d still answers after the pod stopped", port)
	}
}

func TestNetworkDNSAndHostsInPod(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	p := runPod(t, a, podConfig(t, "dns", withDNS([]string{"10.96.0.10", "10.96.0.11"}, []string{"e2e.svc.cluster.local", "svc.cluster.local"})))
	ip := podIP(t, a, p.id)
	c := ctrConfig("probe", env.images.busybox, withShell("cat /etc/resolv.conf /etc/hosts; ip -o -4 addr show eth0"))
	id := runContainer(t, a, p, c)
	if ex := waitExited(t, a, id, 30*time.Second); ex.ExitCode != 0 {
		t.Fatalf("probe exited %d", ex.ExitCode)
	}
	out := logText(readLog(t, logPath(p, c)), "stdout")
	for _, want := range []string{
		"search e2e.svc.cluster.local svc.cluster.local\n", "nameserver 10.96.0.10\n", "nameserver 10.96.0.11\n",
		"options ndots:5\n", ip + "\tdns\n", "inet " + ip + "/24",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("pod lacks %q:\n%s", want, out)
		}
	}
}

func TestNetworkPodCIDRFromKubelet(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	_, err := a.rt.UpdateRuntimeConfig(ctxT(t), &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: tn.podCIDR},
	}})
	must(t, err, "update runtime config")
	p := runPod(t, a, podConfig(t, "cidr"))
	_, cidr, _ := net.ParseCIDR(tn.podCIDR)
	if ip := podIP(t, a, p.id); !cidr.Contains(net.ParseIP(ip)) {
		t.Fatalf("pod IP %s outside the kubelet's pod CIDR %s", ip, tn.podCIDR)
	}
	_, err = a.rt.UpdateRuntimeConfig(ctxT(t), &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.0.0.0/33"},
	}})
	if status.Code(err) != codes.InvalidArgument {
		t.Fatalf("bad pod CIDR: %v, want InvalidArgument", err)
	}
}

func networkCondition(t *testing.T, a *agent) *runtimeapi.RuntimeCondition {
	t.Helper()
	resp, err := a.rt.Status(ctxT(t), &runtimeapi.StatusRequest{})
	must(t, err, "status")
	for _, c := range resp.GetStatus().GetConditions() {
		if c.Type == runtimeapi.NetworkReady {
			return c
		}
	}
	t.Fatal("no NetworkReady condition")
	return nil
}

func TestNetworkReadyFollowsConfig(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	if c := networkCondition(t, a); !c.Status {
		t.Fatalf("no config at all: NetworkReady = %v, want true (default network)", c)
	}
	broken := filepath.Join(tn.confDir, "05-broken.conflist")
	if err := os.WriteFile(broken, []byte(`{"cniVersion": "1.0.0", "name": "broken", "plugins": [`), 0o644); err != nil {
		t.Fatal(err)
	}
	c := networkCondition(t, a)
	if c.Status || c.Reason == "" || !strings.Contains(c.Message, "05-broken.conflist") || !strings.Contains(c.Message, "unexpected end of JSON input") {
		t.Fatalf("broken conflist: NetworkReady = %v, want false naming the file and its parse error", c)
	}
	_, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: podConfig(t, "no-net")})
	if err == nil {
		t.Fatal("RunPodSandbox succeeded without a valid network")
	}
	// A host-network pod needs no pod network.
	runPod(t, a, podConfig(t, "host", withHostNetwork()))

	// Fixing the config takes effect without a restart.
	tn.writeConflist(t, a, "fixed")
	if err := os.Remove(broken); err != nil {
		t.Fatal(err)
	}
	if c := networkCondition(t, a); !c.Status {
		t.Fatalf("after fixing the config: NetworkReady = %v", c)
	}
	p := runPod(t, a, podConfig(t, "net"))
	podIP(t, a, p.id)
}

// checkNoLeftovers asserts the agent holds no netns pin, IP or veth on the test bridge.
func checkNoLeftovers(t *testing.T, tn *testNet, a *agent, ipsBefore int) {
	t.Helper()
	if n := a.netnsPins(t); n != 0 {
		t.Errorf("%d netns pins left", n)
	}
	if n := a.reservedIPs(t); n != ipsBefore {
		t.Errorf("%d IPs reserved, want %d", n, ipsBefore)
	}
	if _, n, _ := tn.veths(t); n != 0 {
		t.Errorf("%d veths left on bridge %s", n, tn.bridge)
	}
	if entries, _ := os.ReadDir(filepath.Join(a.state, "netns")); len(entries) != 0 {
		t.Errorf("netns dir not empty: %d entries", len(entries))
	}
}

func TestNetworkFailingPluginLeavesNothing(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	tn.fakePlugin(t, "berth-e2e-fail", "berth-e2e injected plugin failure", 0)
	// bridge and host-local run first and succeed: the failure must undo their veth and IP.
	tn.writeConflist(t, a, "failing", `{"type": "berth-e2e-fail"}`)
	if c := networkCondition(t, a); !c.Status {
		t.Fatalf("NetworkReady = %v", c)
	}
	_, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: podConfig(t, "doomed")})
	if err == nil || !strings.Contains(err.Error(), "berth-e2e injected plugin failure") {
		t.Fatalf("RunPodSandbox = %v, want the plugin's error", err)
	}
	checkNoLeftovers(t, tn, a, 0)
	list, err := a.rt.ListPodSandbox(ctxT(t), &runtimeapi.ListPodSandboxRequest{})
	must(t, err, "list pods")
	if len(list.Items) != 0 {
		t.Fatalf("failed pod is listed: %v", list.Items)
	}
}

func TestNetworkTimeoutLeaksNoIP(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	tn.fakePlugin(t, "berth-e2e-slow", "berth-e2e slow plugin gave up", 20*time.Second)
	tn.writeConflist(t, a, "slow", `{"type": "berth-e2e-slow"}`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := a.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: podConfig(t, "slow")})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("RunPodSandbox = %v, want DeadlineExceeded", err)
	}
	// The agent notices the cancelled request, kills the plugin and rolls back on its own.
	deadline := time.Now().Add(30 * time.Second)
	for a.reservedIPs(t) != 0 || a.netnsPins(t) != 0 {
		if time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	checkNoLeftovers(t, tn, a, 0)
}

// A crash during CNI ADD leaves a pinned netns, a veth and an IP that no pod record owns;
// the restarted agent releases them before it serves.
func TestNetworkCrashDuringAddIsCleanedAtStartup(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	tn.fakePlugin(t, "berth-e2e-slow", "berth-e2e slow plugin gave up", 3*time.Second)
	tn.writeConflist(t, a, "crashy", `{"type": "berth-e2e-slow"}`)
	go func() {
		_, _ = a.rt.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig(t, "crash")})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for a.reservedIPs(t) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("ADD never reserved an IP")
		}
		time.Sleep(20 * time.Millisecond)
	}
	must(t, a.kill9(), "kill agent")
	if a.reservedIPs(t) != 1 || a.netnsPins(t) != 1 {
		t.Fatalf("after the crash: %d IPs, %d netns pins; want 1 and 1", a.reservedIPs(t), a.netnsPins(t))
	}
	// The killed ADD's plugin outlives the agent; let it finish as a real one would.
	time.Sleep(3 * time.Second)
	must(t, a.start(), "restart agent")
	checkNoLeftovers(t, tn, a, 0)
}

func TestNetworkFiftyPodsLeaveNothing(t *testing.T) {
	const pods = 50
	tn := newTestNet(t)
	a := tn.agent(t)
	vethsBefore, _, oursBefore := tn.veths(t)
	ipsBefore, pinsBefore := a.reservedIPs(t), a.netnsPins(t)

	ids := make([]string, pods)
	ips := map[string]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, pods)
	for w := range 4 {
		wg.Go(func() {
			for i := w; i < pods; i += 4 {
				cfg := podConfig(t, fmt.Sprintf("many-%d", i))
				// A deadline per pod, not one for all fifty: the emulated VM needs minutes
				// for the whole set while each call progresses.
				ctx := ctxT(t)
				resp, err := a.rt.RunPodSandbox(ctx, &runtimeapi.RunPodSandboxRequest{Config: cfg})
				if err != nil {
					errs <- fmt.Errorf("run pod %d: %w", i, err)
					return
				}
				st, err := a.rt.PodSandboxStatus(ctx, &runtimeapi.PodSandboxStatusRequest{PodSandboxId: resp.PodSandboxId})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				ids[i] = resp.PodSandboxId
				ips[st.GetStatus().GetNetwork().GetIp()] = resp.PodSandboxId
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	_, onBridge, _ := tn.veths(t)
	t.Logf("with %d pods: %d IPs reserved, %d netns pins, %d veths on %s", pods, a.reservedIPs(t), a.netnsPins(t), onBridge, tn.bridge)
	if len(ips) != pods || a.reservedIPs(t) != ipsBefore+pods || a.netnsPins(t) != pinsBefore+pods || onBridge != pods {
		t.Fatalf("%d distinct pod IPs, %d reserved, %d pins, %d veths; want %d each", len(ips), a.reservedIPs(t), a.netnsPins(t), onBridge, pods)
	}
	for _, id := range ids {
		ctx := ctxT(t)
		if _, err := a.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("stop %s: %v", id, err)
		}
		// A second stop releases nothing twice.
		if _, err := a.rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("second stop %s: %v", id, err)
		}
		if _, err := a.rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("remove %s: %v", id, err)
		}
	}
	vethsAfter, onBridge, oursAfter := tn.veths(t)
	t.Logf("before: %d IPs, %d pins, %d veths; after: %d IPs, %d pins, %d veths (%d on %s)",
		ipsBefore, pinsBefore, vethsBefore, a.reservedIPs(t), a.netnsPins(t), vethsAfter, onBridge, tn.bridge)
	checkNoLeftovers(t, tn, a, ipsBefore)
	for name := range oursAfter {
		if !oursBefore[name] {
			t.Errorf("veth %s appeared on no bridge or on %s", name, tn.bridge)
		}
	}
	var leftRules []string
	for _, id := range ids {
		leftRules = append(leftRules, iptablesMentions(t, id)...)
	}
	if len(leftRules) > 0 {
		t.Errorf("iptables rules of removed pods remain:\n%s", strings.Join(leftRules, "\n"))
	}
}

// TestBenchRunPodSandbox times RunPodSandbox with the pod network against host-network pods
// in the same run. It runs only with BERTH_BENCH=1 (hack/bench-runp.sh).
func TestBenchRunPodSandbox(t *testing.T) {
	if os.Getenv("BERTH_BENCH") == "" {
		t.Skip("set BERTH_BENCH=1 to run the RunPodSandbox benchmark")
	}
	const runs = 20
	tn := newTestNet(t)
	a := tn.agent(t)
	measure := func(opts ...podOption) time.Duration {
		var d []time.Duration
		for i := range runs {
			cfg := podConfig(t, fmt.Sprintf("bench-%d", i), opts...)
			start := time.Now()
			resp, err := a.rt.RunPodSandbox(ctxT(t), &runtimeapi.RunPodSandboxRequest{Config: cfg})
			d = append(d, time.Since(start))
			must(t, err, "run pod")
			_, err = a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: resp.PodSandboxId})
			must(t, err, "stop pod")
			_, err = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: resp.PodSandboxId})
			must(t, err, "remove pod")
		}
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return (d[runs/2-1] + d[runs/2]) / 2
	}
	measure() // warm up: the first ADD creates the bridge and the node-wide chains
	withNet := measure()
	hostNet := measure(withHostNetwork())
	fmt.Printf("RunPodSandbox median of %d: with network %s, host network %s, ratio %.2f\n",
		runs, withNet.Round(time.Millisecond), hostNet.Round(time.Millisecond), float64(withNet)/float64(hostNet))
	checkNoLeftovers(t, tn, a, 0)
}

// bridgeV4 lists the IPv4 addresses of the test bridge in kernel order.
func (tn *testNet) bridgeV4(t *testing.T) []string {
	t.Helper()
	l, err := netlink.LinkByName(tn.bridge)
	if err != nil {
		t.Fatalf("bridge %s: %v", tn.bridge, err)
	}
	addrs, err := netlink.AddrList(l, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, a := range addrs {
		out = append(out, a.IPNet.String())
	}
	return out
}

// gatewayOf is the first host of cidr with its mask: the bridge's address for that range.
func gatewayOf(t *testing.T, cidr string) string {
	t.Helper()
	_, n, err := net.ParseCIDR(cidr)
	if err != nil {
		t.Fatal(err)
	}
	ip := n.IP.To4()
	ones, _ := n.Mask.Size()
	return fmt.Sprintf("%d.%d.%d.%d/%d", ip[0], ip[1], ip[2], ip[3]+1, ones)
}

// serveOn accepts TCP connections on addr from the host and answers each with greeting.
func serveOn(t *testing.T, addr, greeting string) string {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = io.WriteString(c, greeting+"\n")
			c.Close()
		}
	}()
	return l.Addr().String()
}

// reaches runs nc from a running container to addr until it reads want (a server may still be
// starting), and fails the test with the output if it never does.
func reaches(t *testing.T, a *agent, ctrID, from, addr, want string) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	script := fmt.Sprintf("for i in $(seq 50); do printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 %s %s | grep %s && exit 0; sleep 0.2; done; exit 1", host, port, want)
	if out, code := execIn(t, a, ctrID, "/bin/sh", "-c", script); code != 0 {
		t.Fatalf("%s cannot reach %s (exit %d):\n%s", from, addr, code, out)
	}
}

// The kubelet's pod CIDR arrives after a pod ran on default_subnet (as once the
// controller-manager allocated the node's podCIDR): new pods get addresses from it, the old pod
// keeps its address and gateway and stays reachable, a restarted agent still uses the new
// CIDR, and once the old pod is gone its gateway leaves the bridge.
func TestNetworkPodCIDRChangeKeepsOldPods(t *testing.T) {
	tn := newTestNet(t)
	a := tn.agent(t)
	oldGW, newGW := gatewayOf(t, tn.subnet), gatewayOf(t, tn.podCIDR)
	_, oldNet, _ := net.ParseCIDR(tn.subnet)
	_, newNet, _ := net.ParseCIDR(tn.podCIDR)

	old := runPod(t, a, podConfig(t, "old"))
	oldIP := podIP(t, a, old.id)
	if !oldNet.Contains(net.ParseIP(oldIP)) {
		t.Fatalf("first pod IP %s outside default_subnet %s", oldIP, tn.subnet)
	}
	oldCtr := runContainer(t, a, old, ctrConfig("httpd", env.images.busybox, withShell(httpdScript(8080, "hello-from-old"))))
	gwAddr := serveOn(t, net.JoinHostPort(strings.Split(oldGW, "/")[0], "0"), "hello-from-gateway")

	_, err := a.rt.UpdateRuntimeConfig(ctxT(t), &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: tn.podCIDR},
	}})
	must(t, err, "update runtime config")
	if c := networkCondition(t, a); !c.Status {
		t.Fatalf("after the pod CIDR change: NetworkReady = %v", c)
	}

	fresh := runPod(t, a, podConfig(t, "new"))
	if ip := podIP(t, a, fresh.id); !newNet.Contains(net.ParseIP(ip)) {
		t.Fatalf("pod IP %s after the change, want one in the kubelet's pod CIDR %s", ip, tn.podCIDR)
	}
	if got := tn.bridgeV4(t); len(got) != 2 || got[0] != newGW || got[1] != oldGW {
		t.Fatalf("bridge addresses %v, want the new gateway %s first and the old %s kept", got, newGW, oldGW)
	}
	freshCtr := runContainer(t, a, fresh, ctrConfig("client", env.images.busybox, withCommand("sleep", "1000")))
	reaches(t, a, freshCtr, "new pod", net.JoinHostPort(oldIP, "8080"), "hello-from-old")
	reaches(t, a, oldCtr, "old pod", gwAddr, "hello-from-gateway")

	// The kubelet does not send the CIDR again to a restarted agent.
	must(t, a.stop(), "stop agent")
	must(t, a.start(), "restart agent")
	if c := networkCondition(t, a); !c.Status {
		t.Fatalf("after restart: NetworkReady = %v", c)
	}
	after := runPod(t, a, podConfig(t, "after-restart"))
	if ip := podIP(t, a, after.id); !newNet.Contains(net.ParseIP(ip)) {
		t.Fatalf("pod IP %s after restart, want one in the pod CIDR %s", ip, tn.podCIDR)
	}
	if ip := podIP(t, a, old.id); ip != oldIP {
		t.Fatalf("old pod's IP after restart: %s, want %s", ip, oldIP)
	}
	reaches(t, a, oldCtr, "old pod after restart", gwAddr, "hello-from-gateway")

	stopPod(t, a, old)
	if got := tn.bridgeV4(t); len(got) != 1 || got[0] != newGW {
		t.Fatalf("old pod removed: bridge addresses %v, want only the new gateway %s", got, newGW)
	}
	stopPod(t, a, fresh)
	stopPod(t, a, after)
	checkNoLeftovers(t, tn, a, 0)
}
