package cni

import (
	"fmt"
	"net"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
)

// PortMapping publishes ContainerPort of the pod on HostPort of the node (CRI hostPort).
type PortMapping struct {
	HostPort      int32
	ContainerPort int32
	Protocol      string // "tcp", "udp" or "sctp"; case-insensitive, "" is tcp
	HostIP        string // "" is every host address
}

// Bandwidth limits the pod's traffic (kubernetes.io/{ingress,egress}-bandwidth); zero is
// unlimited. Rates in bits per second, bursts in bits, as the bandwidth plugin expects.
type Bandwidth struct {
	IngressRate, IngressBurst uint64
	EgressRate, EgressBurst   uint64
}

// DNS is the pod's resolver config, for plugins that declare the dns capability.
type DNS struct {
	Servers, Searches, Options []string
}

// SetupRequest attaches one pod sandbox.
type SetupRequest struct {
	ID           string // sandbox id: the CNI container id
	NetNSPath    string // pinned network namespace
	PodName      string
	PodNamespace string
	PodUID       string
	PortMappings []PortMapping // only entries with HostPort > 0 are published
	Bandwidth    *Bandwidth
	DNS          *DNS
}

// TeardownRequest detaches one pod sandbox. It carries the same identity as the SetupRequest:
// libcni's cache normally supplies everything DEL needs, but after a crash between ADD and
// caching only the request does (portmap removes a pod's rules only if told its mappings).
type TeardownRequest = SetupRequest

func (r SetupRequest) validate() error {
	if r.ID == "" {
		return fmt.Errorf("sandbox id is empty: %w", errdefs.ErrInvalidArgument)
	}
	if r.NetNSPath == "" {
		return fmt.Errorf("sandbox %s: netns path is empty: %w", r.ID, errdefs.ErrInvalidArgument)
	}
	for _, pm := range r.PortMappings {
		if pm.HostPort < 0 || pm.HostPort > 65535 || pm.ContainerPort <= 0 || pm.ContainerPort > 65535 {
			return fmt.Errorf("sandbox %s: port mapping %d->%d out of range: %w", r.ID, pm.HostPort, pm.ContainerPort, errdefs.ErrInvalidArgument)
		}
		if pm.HostIP != "" && net.ParseIP(pm.HostIP) == nil {
			return fmt.Errorf("sandbox %s: host ip %q: %w", r.ID, pm.HostIP, errdefs.ErrInvalidArgument)
		}
		switch strings.ToLower(pm.Protocol) {
		case "", "tcp", "udp", "sctp":
		default:
			return fmt.Errorf("sandbox %s: protocol %q: %w", r.ID, pm.Protocol, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// runtimeConf builds the arguments of one plugin invocation: the Kubernetes CNI_ARGS (which
// plugins such as Calico and Cilium key on) and the capability args, which libcni hands only
// to plugins that declare the capability.
func (m *Manager) runtimeConf(r SetupRequest) *libcni.RuntimeConf {
	caps := map[string]any{}
	if pms := portMappings(r.PortMappings); len(pms) > 0 {
		caps["portMappings"] = pms
	}
	if b := r.Bandwidth; b != nil && (b.IngressRate > 0 || b.EgressRate > 0) {
		caps["bandwidth"] = map[string]uint64{
			"ingressRate": b.IngressRate, "ingressBurst": b.IngressBurst,
			"egressRate": b.EgressRate, "egressBurst": b.EgressBurst,
		}
	}
	if d := r.DNS; d != nil {
		caps["dns"] = map[string][]string{"servers": d.Servers, "searches": d.Searches, "options": d.Options}
	}
	if cidr := m.PodCIDR(); cidr != "" {
		var sets [][]map[string]string
		for _, c := range strings.Split(cidr, ",") {
			sets = append(sets, []map[string]string{{"subnet": strings.TrimSpace(c)}})
		}
		caps["ipRanges"] = sets
	}
	return &libcni.RuntimeConf{
		ContainerID: r.ID,
		NetNS:       r.NetNSPath,
		IfName:      m.opts.IfName,
		Args: [][2]string{
			{"IgnoreUnknown", "1"},
			{"K8S_POD_NAMESPACE", r.PodNamespace},
			{"K8S_POD_NAME", r.PodName},
			{"K8S_POD_INFRA_CONTAINER_ID", r.ID},
			{"K8S_POD_UID", r.PodUID},
		},
		CapabilityArgs: caps,
	}
}

// portMappings converts to the portMappings capability format (CNI CONVENTIONS.md).
func portMappings(in []PortMapping) []map[string]any {
	var out []map[string]any
	for _, pm := range in {
		if pm.HostPort <= 0 {
			continue
		}
		proto := strings.ToLower(pm.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		e := map[string]any{"hostPort": pm.HostPort, "containerPort": pm.ContainerPort, "protocol": proto}
		if pm.HostIP != "" {
			e["hostIP"] = pm.HostIP
		}
		out = append(out, e)
	}
	return out
}

// joinPath is CNI_PATH: the plugin dirs, colon-separated.
func joinPath(dirs []string) string { return strings.Join(dirs, ":") }
