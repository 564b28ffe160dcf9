package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/network/cni"
)

// kindCNI is a pod's attachment to the pod network (its IP, veth and port mappings). Its
// ledger path is the pod's network state file, which holds the request a DEL needs.
//
// The store ranks kinds it does not know first, so an attachment is released before the
// netns it lives in is unpinned (TestCNIReleasedBeforeNetNS keeps that true).
const kindCNI store.Kind = "cni"

// networkStateFile is the pod's network state: written before ADD so that a DEL after a
// crash still knows the pod's identity and port mappings, and completed with the IPs after.
const networkStateFile = "network.json"

// networkState is what networkStateFile holds.
type networkState struct {
	Request cni.SetupRequest `json:"request"`
	IPs     []string         `json:"ips,omitempty"`
}

// Bandwidth annotations the kubelet passes through from the pod (CNI CONVENTIONS.md).
const (
	annotationIngressBandwidth = "kubernetes.io/ingress-bandwidth"
	annotationEgressBandwidth  = "kubernetes.io/egress-bandwidth"
)

func networkResource(md store.SandboxMetadata) store.Resource {
	return store.Resource{Kind: kindCNI, Path: filepath.Join(md.PodDir, networkStateFile), Owner: md.ID}
}

// setupNetwork attaches the pod's netns to the pod network. The attachment is recorded (with
// the request, in the pod dir) before ADD runs, so a crash mid-ADD is torn down at recovery;
// a failed ADD has already been undone by the network, and the pushed release runs DEL again,
// which also covers an undo that failed.
func (s *Service) setupNetwork(ctx context.Context, md *store.SandboxMetadata, st *store.SandboxStatus, cl *cleanups) error {
	cfg := md.Config.PodSandboxConfig
	if hostNetwork(cfg) {
		return nil
	}
	req, err := networkRequest(*md)
	if err != nil {
		return err
	}
	r := networkResource(*md)
	return s.acquire(cl, r, func() error {
		unlock := s.netLocks.lock(md.ID)
		defer unlock()
		if err := writeNetworkState(r.Path, networkState{Request: req}); err != nil {
			return err
		}
		res, err := s.network.Setup(ctx, req)
		if err != nil {
			return err
		}
		ips := make([]string, len(res.IPs))
		for i, ip := range res.IPs {
			ips[i] = ip.String()
		}
		if err := writeNetworkState(r.Path, networkState{Request: req, IPs: ips}); err != nil {
			return err
		}
		st.PodIP = ips[0]
		return os.WriteFile(filepath.Join(md.PodDir, "hosts"), hostsFile(podHostname(*md), ips[0]), 0o644)
	})
}

// podHostname is the name setupPodDir wrote for the pod.
func podHostname(md store.SandboxMetadata) string {
	b, err := os.ReadFile(filepath.Join(md.PodDir, "hostname"))
	if err != nil {
		return md.Hostname
	}
	return strings.TrimSpace(string(b))
}

// teardownNetwork detaches the pod if it is still attached. It fails while DEL fails, so
// StopPodSandbox fails and the kubelet retries; once DEL succeeded it is a no-op.
func (s *Service) teardownNetwork(ctx context.Context, md store.SandboxMetadata) error {
	return s.releaseHeld(ctx, networkResource(md))
}

// holds reports whether r is still in the ledger.
func (s *Service) holds(r store.Resource) (bool, error) {
	rs, err := s.store.ResourcesOf(r.Owner)
	if err != nil {
		return false, err
	}
	for _, x := range rs {
		if x == r {
			return true, nil
		}
	}
	return false, nil
}

// releaseNetwork runs DEL for the attachment recorded at path. Without the state file (a
// crash before it was written, or its directory already removed) DEL still runs by sandbox
// id: the network's cache, or host-local's by-id release, has the rest.
func (s *Service) releaseNetwork(ctx context.Context, owner, path string) error {
	unlock := s.netLocks.lock(owner)
	defer unlock()
	state, err := readNetworkState(path)
	if err != nil {
		return err
	}
	req := state.Request
	if req.ID == "" {
		req.ID = owner
	}
	return s.network.Teardown(ctx, req)
}

func writeNetworkState(path string, st networkState) error {
	b, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode network state: %w", err)
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write network state: %w", err)
	}
	return nil
}

// readNetworkState reads a pod's network state; a missing file is an empty state.
func readNetworkState(path string) (networkState, error) {
	var st networkState
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, fmt.Errorf("read network state: %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("decode network state %s: %w", path, err)
	}
	return st, nil
}

// podIPs are the pod's IPs, primary first; st.PodIP alone when the state file is gone.
func podIPs(md store.SandboxMetadata, st store.SandboxStatus) []string {
	if ns, err := readNetworkState(filepath.Join(md.PodDir, networkStateFile)); err == nil && len(ns.IPs) > 0 {
		return ns.IPs
	}
	if st.PodIP != "" {
		return []string{st.PodIP}
	}
	return nil
}

// networkRequest is the CNI identity and capability args of a pod: the kubelet's pod
// metadata (CNI_ARGS), its hostPorts, DNS config and bandwidth annotations.
func networkRequest(md store.SandboxMetadata) (cni.SetupRequest, error) {
	cfg := md.Config.PodSandboxConfig
	meta := cfg.GetMetadata()
	req := cni.SetupRequest{
		ID: md.ID, NetNSPath: md.NetNS,
		PodName: meta.GetName(), PodNamespace: meta.GetNamespace(), PodUID: meta.GetUid(),
	}
	for _, pm := range cfg.GetPortMappings() {
		if pm.GetHostPort() <= 0 {
			continue
		}
		req.PortMappings = append(req.PortMappings, cni.PortMapping{
			HostPort: pm.GetHostPort(), ContainerPort: pm.GetContainerPort(),
			Protocol: protocolName(pm.GetProtocol()), HostIP: pm.GetHostIp(),
		})
	}
	if dns := cfg.GetDnsConfig(); dns != nil {
		req.DNS = &cni.DNS{Servers: dns.GetServers(), Searches: dns.GetSearches(), Options: dns.GetOptions()}
	}
	bw, err := bandwidth(cfg.GetAnnotations())
	if err != nil {
		return req, err
	}
	req.Bandwidth = bw
	return req, nil
}

func protocolName(p runtimeapi.Protocol) string {
	switch p {
	case runtimeapi.Protocol_UDP:
		return "udp"
	case runtimeapi.Protocol_SCTP:
		return "sctp"
	default:
		return "tcp"
	}
}

// bandwidth reads the pod's bandwidth annotations (bits per second). Bursts are unlimited
// within a uint32 as containerd and CRI-O set them: the bandwidth plugin requires one.
func bandwidth(ann map[string]string) (*cni.Bandwidth, error) {
	in, inOK := ann[annotationIngressBandwidth]
	out, outOK := ann[annotationEgressBandwidth]
	if !inOK && !outOK {
		return nil, nil
	}
	bw := &cni.Bandwidth{}
	for _, a := range []struct {
		key, val    string
		ok          bool
		rate, burst *uint64
	}{
		{annotationIngressBandwidth, in, inOK, &bw.IngressRate, &bw.IngressBurst},
		{annotationEgressBandwidth, out, outOK, &bw.EgressRate, &bw.EgressBurst},
	} {
		if !a.ok {
			continue
		}
		v, err := parseQuantity(a.val)
		if err != nil || v == 0 {
			return nil, fmt.Errorf("annotation %s=%q is not a positive quantity: %w", a.key, a.val, errdefs.ErrInvalidArgument)
		}
		*a.rate, *a.burst = v, math.MaxUint32
	}
	return bw, nil
}

// quantitySuffixes are the Kubernetes quantity suffixes the bandwidth annotations use.
var quantitySuffixes = []struct {
	suffix string
	mult   uint64
}{
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
	{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18},
}

// parseQuantity parses a whole Kubernetes quantity such as "10M" or "1Gi".
func parseQuantity(s string) (uint64, error) {
	mult := uint64(1)
	for _, q := range quantitySuffixes {
		if strings.HasSuffix(s, q.suffix) {
			s, mult = strings.TrimSuffix(s, q.suffix), q.mult
			break
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, err
	}
	if n > math.MaxUint64/mult {
		return 0, fmt.Errorf("quantity overflows")
	}
	return n * mult, nil
}

// networkReady is the CRI NetworkReady condition.
func (s *Service) networkReady() *runtimeapi.RuntimeCondition {
	c := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: true}
	if err := s.network.Status(); err != nil {
		c.Status, c.Reason, c.Message = false, "NetworkPluginNotReady", err.Error()
	}
	return c
}

// gcNetwork releases IPs and attachments that no sandbox record accounts for (a crash
// between ADD and recording the pod). Network trouble must not keep the runtime from
// starting, so failures are logged.
func (s *Service) gcNetwork(ctx context.Context) {
	var valid []string
	for _, sb := range s.store.Sandboxes.List() {
		valid = append(valid, sb.ID())
	}
	if err := s.network.GC(ctx, valid); err != nil {
		s.log.Warn("recover: cni gc", "err", err)
	}
}

// keyedLocks serializes network calls per sandbox: the CNI plugins must not see an ADD and a
// DEL (or two DELs) of one sandbox at once.
type keyedLocks struct {
	mu sync.Mutex
	m  map[string]*keyedLock
}

type keyedLock struct {
	mu   sync.Mutex
	refs int
}

func (k *keyedLocks) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedLock{}
	}
	l := k.m[key]
	if l == nil {
		l = &keyedLock{}
		k.m[key] = l
	}
	l.refs++
	k.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		k.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
