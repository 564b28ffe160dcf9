package server

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/network/cni"
)

// fakeNetwork hands out IPs in memory and records what it was asked.
type fakeNetwork struct {
	mu          sync.Mutex
	attachments map[string]cni.SetupRequest
	next        int
	dualStack   bool
	setupErr    error
	teardownErr error
	statusErr   error
	cidr        string
	setups      []cni.SetupRequest
	teardowns   []cni.TeardownRequest
	gcValid     [][]string
	inflight    map[string]int
	overlapped  bool
}

func newFakeNetwork() *fakeNetwork {
	return &fakeNetwork{attachments: map[string]cni.SetupRequest{}, inflight: map[string]int{}}
}

func (f *fakeNetwork) Status() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.statusErr
}

func (f *fakeNetwork) SetPodCIDR(cidr string) error {
	if _, _, err := net.ParseCIDR(cidr); err != nil {
		return fmt.Errorf("set pod cidr: %w", errdefs.ErrInvalidArgument)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cidr = cidr
	return nil
}

// enter notes a call in flight for id and reports overlapping calls for one sandbox.
func (f *fakeNetwork) enter(id string) func() {
	f.mu.Lock()
	f.inflight[id]++
	if f.inflight[id] > 1 {
		f.overlapped = true
	}
	f.mu.Unlock()
	time.Sleep(5 * time.Millisecond)
	return func() {
		f.mu.Lock()
		f.inflight[id]--
		f.mu.Unlock()
	}
}

func (f *fakeNetwork) Setup(ctx context.Context, req cni.SetupRequest) (cni.Result, error) {
	defer f.enter(req.ID)()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.setups = append(f.setups, req)
	if f.setupErr != nil {
		return cni.Result{}, f.setupErr
	}
	f.next++
	f.attachments[req.ID] = req
	res := cni.Result{IPs: []net.IP{net.IPv4(10, 88, 0, byte(f.next))}, Network: "fake"}
	if f.dualStack {
		res.IPs = append(res.IPs, net.ParseIP(fmt.Sprintf("fd88::%d", f.next)))
	}
	return res, nil
}

func (f *fakeNetwork) Teardown(ctx context.Context, req cni.TeardownRequest) error {
	defer f.enter(req.ID)()
	f.mu.Lock()
	defer f.mu.Unlock()
	f.teardowns = append(f.teardowns, req)
	if f.teardownErr != nil {
		return f.teardownErr
	}
	delete(f.attachments, req.ID)
	return nil
}

func (f *fakeNetwork) GC(ctx context.Context, valid []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.gcValid = append(f.gcValid, slices.Clone(valid))
	for id := range f.attachments {
		if !slices.Contains(valid, id) {
			delete(f.attachments, id)
		}
	}
	return nil
}

func (f *fakeNetwork) attached() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.attachments)
}

func (f *fakeNetwork) teardownsOf(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.teardowns {
		if r.ID == id {
			n++
		}
	}
	return n
}

func withPortMappings(pms ...*runtimeapi.PortMapping) func(*runtimeapi.PodSandboxConfig) {
	return func(c *runtimeapi.PodSandboxConfig) { c.PortMappings = pms }
}

func TestRunPodSandboxAttachesNetwork(t *testing.T) {
	e := newTestEnv(t)
	e.net.dualStack = true
	pod := podConfig("web", withPortMappings(
		&runtimeapi.PortMapping{HostPort: 8080, ContainerPort: 80, HostIp: "127.0.0.1"},
		&runtimeapi.PortMapping{HostPort: 5353, ContainerPort: 53, Protocol: runtimeapi.Protocol_UDP},
		&runtimeapi.PortMapping{ContainerPort: 9090}, // no hostPort: not published
	))
	pod.DnsConfig = &runtimeapi.DNSConfig{Servers: []string{"10.96.0.10"}, Searches: []string{"ns.svc.cluster.local"}, Options: []string{"ndots:5"}}
	pod.Annotations = map[string]string{annotationIngressBandwidth: "10M", annotationEgressBandwidth: "1Mi"}
	id := e.runPod(t, pod)

	sb, err := e.svc.store.Sandboxes.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	md := sb.Metadata()
	if len(e.net.setups) != 1 {
		t.Fatalf("%d setups, want 1", len(e.net.setups))
	}
	got := e.net.setups[0]
	if got.ID != id || got.NetNSPath != md.NetNS || md.NetNS == "" ||
		got.PodName != "web" || got.PodNamespace != "default" || got.PodUID != "web-uid" {
		t.Errorf("setup identity = %+v, want sandbox %s in netns %s", got, id, md.NetNS)
	}
	wantPM := []cni.PortMapping{
		{HostPort: 8080, ContainerPort: 80, Protocol: "tcp", HostIP: "127.0.0.1"},
		{HostPort: 5353, ContainerPort: 53, Protocol: "udp"},
	}
	if !slices.Equal(got.PortMappings, wantPM) {
		t.Errorf("port mappings = %+v, want %+v", got.PortMappings, wantPM)
	}
	if got.DNS == nil || !slices.Equal(got.DNS.Servers, []string{"10.96.0.10"}) || !slices.Equal(got.DNS.Options, []string{"ndots:5"}) {
		t.Errorf("dns = %+v", got.DNS)
	}
	if b := got.Bandwidth; b == nil || b.IngressRate != 10e6 || b.EgressRate != 1<<20 || b.IngressBurst != math.MaxUint32 {
		t.Errorf("bandwidth = %+v", got.Bandwidth)
	}

	resp, err := e.svc.PodSandboxStatus(context.Background(), &runtimeapi.PodSandboxStatusRequest{PodSandboxId: id})
	if err != nil {
		t.Fatal(err)
	}
	n := resp.Status.Network
	if n.GetIp() != "10.88.0.1" || len(n.GetAdditionalIps()) != 1 || n.AdditionalIps[0].Ip != "fd88::1" {
		t.Errorf("status network = %v, want 10.88.0.1 and fd88::1", n)
	}
	hosts, _ := os.ReadFile(filepath.Join(md.PodDir, "hosts"))
	if !strings.Contains(string(hosts), "10.88.0.1\tweb\n") {
		t.Errorf("hosts lacks the pod's own line:\n%s", hosts)
	}
}

func TestHostNetworkPodSkipsCNI(t *testing.T) {
	e := newTestEnv(t)
	id := e.runPod(t, podConfig("h", withHostNetwork()))
	if len(e.net.setups) != 0 {
		t.Fatalf("host-network pod ran CNI ADD: %+v", e.net.setups)
	}
	if _, err := e.svc.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if n := e.net.teardownsOf(id); n != 0 {
		t.Fatalf("host-network pod ran CNI DEL %d times", n)
	}
}

func TestRunPodSandboxNetworkFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name   string
		inject func(e *testEnv)
	}{
		{name: "cni add fails", inject: func(e *testEnv) { e.net.setupErr = errInjected }},
		{name: "later step fails", inject: func(e *testEnv) { e.shims.startErr = errInjected }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			tt.inject(e)
			_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p")})
			if !errors.Is(err, errInjected) {
				t.Fatalf("RunPodSandbox = %v, want the injected failure", err)
			}
			e.assertNothingLeft(t)
			if len(e.net.teardowns) == 0 {
				t.Fatal("rollback ran no CNI DEL")
			}
		})
	}
}

func TestStopPodSandboxRetriesTeardown(t *testing.T) {
	e := newTestEnv(t)
	id := e.runPod(t, podConfig("p"))
	ctx := context.Background()
	e.net.teardownErr = errInjected
	if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); !errors.Is(err, errInjected) {
		t.Fatalf("StopPodSandbox with failing DEL = %v, want the DEL's error", err)
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); !errors.Is(err, errInjected) {
		t.Fatalf("RemovePodSandbox with failing DEL = %v, want the DEL's error", err)
	}
	if e.net.attached() != 1 {
		t.Fatal("attachment lost while DEL fails")
	}
	e.net.mu.Lock()
	e.net.teardownErr = nil
	e.net.mu.Unlock()
	for i := range 2 {
		if _, err := e.svc.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
			t.Fatalf("stop %d: %v", i, err)
		}
	}
	// Two failed attempts, then one DEL that succeeded; the second Stop found nothing to do.
	if n := e.net.teardownsOf(id); n != 3 {
		t.Fatalf("%d DELs, want 3 (two failed, one succeeded)", n)
	}
	if _, err := e.svc.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
		t.Fatal(err)
	}
	if n := e.net.teardownsOf(id); n != 3 {
		t.Fatalf("remove after a successful stop ran DEL again (%d DELs)", n)
	}
	e.assertNothingLeft(t)
}

func TestConcurrentStopsDoNotOverlapCNI(t *testing.T) {
	e := newTestEnv(t)
	id := e.runPod(t, podConfig("p"))
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := e.svc.StopPodSandbox(context.Background(), &runtimeapi.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if e.net.overlapped {
		t.Fatal("CNI calls for one sandbox overlapped")
	}
	if e.net.attached() != 0 {
		t.Fatal("pod still attached after stop")
	}
}

// A crash after the attachment was recorded but before the sandbox was: recovery runs DEL with
// the recorded request (port mappings included) and GC with the surviving sandboxes.
func TestRecoverReleasesUnrecordedAttachment(t *testing.T) {
	e := newTestEnv(t)
	keep := e.runPod(t, podConfig("keep"))
	e.svc.Close()

	orphan := newID()
	md := store.SandboxMetadata{ID: orphan, PodDir: filepath.Join(e.cfg.State, "sandboxes", orphan), NetNS: "/run/x/net"}
	req := cni.SetupRequest{ID: orphan, NetNSPath: md.NetNS, PodName: "lost", PortMappings: []cni.PortMapping{{HostPort: 8080, ContainerPort: 80, Protocol: "tcp"}}}
	if err := os.MkdirAll(md.PodDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeNetworkState(filepath.Join(md.PodDir, networkStateFile), networkState{Request: req}); err != nil {
		t.Fatal(err)
	}
	e.net.attachments[orphan] = req
	db, err := store.Open(filepath.Join(e.cfg.Root, "cri", "meta.db"), time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []store.Resource{networkResource(md), {Kind: store.KindDir, Path: md.PodDir, Owner: orphan}} {
		if err := db.AddResource(r); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	e.svc = e.newService(t)
	if n := e.net.teardownsOf(orphan); n != 1 {
		t.Fatalf("%d DELs of the orphan, want 1", n)
	}
	last := e.net.teardowns[len(e.net.teardowns)-1]
	if last.PodName != "lost" || len(last.PortMappings) != 1 {
		t.Errorf("DEL without the recorded request: %+v", last)
	}
	if len(e.net.gcValid) == 0 || !slices.Equal(e.net.gcValid[len(e.net.gcValid)-1], []string{keep}) {
		t.Errorf("GC valid sets = %v, want [%s]", e.net.gcValid, keep)
	}
	if _, err := os.Stat(md.PodDir); !os.IsNotExist(err) {
		t.Errorf("orphan pod dir left: %v", err)
	}
	if e.net.attached() != 1 {
		t.Errorf("%d attachments, want only the live pod's", e.net.attached())
	}
}

func TestCNIReleasedBeforeNetNS(t *testing.T) {
	rs := []store.Resource{
		{Kind: store.KindDir, Path: "/s/sandboxes/a", Owner: "a"},
		{Kind: store.KindNetNS, Path: "/s/netns/a/net", Owner: "a"},
		{Kind: kindCNI, Path: "/s/sandboxes/a/network.json", Owner: "a"},
		{Kind: store.KindMount, Path: "/s/sandboxes/a/shm", Owner: "a"},
	}
	store.SortForRelease(rs)
	iCNI := slices.IndexFunc(rs, func(r store.Resource) bool { return r.Kind == kindCNI })
	iNS := slices.IndexFunc(rs, func(r store.Resource) bool { return r.Kind == store.KindNetNS })
	iDir := slices.IndexFunc(rs, func(r store.Resource) bool { return r.Kind == store.KindDir })
	if iCNI > iNS || iCNI > iDir {
		t.Fatalf("release order %v: the attachment must go before its netns and state dir", rs)
	}
}

func TestNetworkReadyCondition(t *testing.T) {
	tests := []struct {
		name      string
		err       error
		wantReady bool
	}{
		{name: "valid config", wantReady: true},
		{name: "broken config", err: errors.New("parse 10-x.conflist: unexpected end of JSON input")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.net.statusErr = tt.err
			resp, err := e.svc.Status(context.Background(), &runtimeapi.StatusRequest{})
			if err != nil {
				t.Fatal(err)
			}
			var c *runtimeapi.RuntimeCondition
			for _, x := range resp.Status.Conditions {
				if x.Type == runtimeapi.NetworkReady {
					c = x
				}
			}
			if c == nil || c.Status != tt.wantReady {
				t.Fatalf("NetworkReady = %v, want %v", c, tt.wantReady)
			}
			if tt.err != nil && (c.Reason != "NetworkPluginNotReady" || c.Message != tt.err.Error()) {
				t.Fatalf("NetworkReady reason %q message %q, want the network's error", c.Reason, c.Message)
			}
		})
	}
}

func TestUpdateRuntimeConfigSetsPodCIDR(t *testing.T) {
	e := newTestEnv(t)
	ctx := context.Background()
	update := func(cidr string) error {
		_, err := e.svc.UpdateRuntimeConfig(ctx, &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
			NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: cidr},
		}})
		return err
	}
	if err := update("10.244.1.0/24"); err != nil {
		t.Fatal(err)
	}
	if e.net.cidr != "10.244.1.0/24" {
		t.Fatalf("network pod cidr = %q", e.net.cidr)
	}
	if err := update("10.244.1.0/33"); !errdefs.IsInvalidArgument(err) {
		t.Fatalf("bad cidr: %v, want InvalidArgument", err)
	}
	if e.net.cidr != "10.244.1.0/24" {
		t.Fatalf("bad cidr replaced the pod cidr: %q", e.net.cidr)
	}
}

// The kubelet sends the pod CIDR only when it changed from what it sent last: a restarted
// agent must hand the recorded one to its network before it sets up or collects anything.
func TestPodCIDRSurvivesRestart(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.svc.UpdateRuntimeConfig(context.Background(), &runtimeapi.UpdateRuntimeConfigRequest{RuntimeConfig: &runtimeapi.RuntimeConfig{
		NetworkConfig: &runtimeapi.NetworkConfig{PodCidr: "10.244.7.0/24"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	e.svc.Close()
	e.net = newFakeNetwork() // a new process: the network starts on default_subnet
	e.svc = e.newService(t)
	if e.net.cidr != "10.244.7.0/24" || e.svc.podCIDR.Load() != "10.244.7.0/24" {
		t.Fatalf("after restart: network cidr %q, status cidr %v; want 10.244.7.0/24", e.net.cidr, e.svc.podCIDR.Load())
	}
}

func TestBandwidthAnnotations(t *testing.T) {
	tests := []struct {
		name          string
		ann           map[string]string
		wantIn, wantE uint64
		wantNil       bool
		wantErr       bool
	}{
		{name: "none", ann: map[string]string{"other": "1"}, wantNil: true},
		{name: "decimal suffix", ann: map[string]string{annotationIngressBandwidth: "10M"}, wantIn: 10_000_000},
		{name: "binary suffix", ann: map[string]string{annotationEgressBandwidth: "2Gi"}, wantE: 2 << 30},
		{name: "plain", ann: map[string]string{annotationIngressBandwidth: "1000", annotationEgressBandwidth: "5k"}, wantIn: 1000, wantE: 5000},
		{name: "garbage", ann: map[string]string{annotationIngressBandwidth: "fast"}, wantErr: true},
		{name: "zero", ann: map[string]string{annotationEgressBandwidth: "0"}, wantErr: true},
		{name: "overflow", ann: map[string]string{annotationEgressBandwidth: "99999E"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bw, err := bandwidth(tt.ann)
			if tt.wantErr {
				if !errdefs.IsInvalidArgument(err) {
					t.Fatalf("err = %v, want InvalidArgument", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tt.wantNil {
				if bw != nil {
					t.Fatalf("bandwidth = %+v, want none", bw)
				}
				return
			}
			if bw.IngressRate != tt.wantIn || bw.EgressRate != tt.wantE {
				t.Fatalf("bandwidth = %+v, want in %d out %d", bw, tt.wantIn, tt.wantE)
			}
		})
	}
}
