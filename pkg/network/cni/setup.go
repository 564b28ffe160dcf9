package cni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// rollbackTimeout bounds the DEL that undoes a failed ADD; it runs on a fresh context since the
// request's may be what expired.
const rollbackTimeout = time.Minute

// Result is what the pod network gave a sandbox.
type Result struct {
	// IPs of the pod's interface, primary first: IPv4 before IPv6 (the kubelet's PodIP is the
	// first, PodIPs the rest for dual-stack).
	IPs        []net.IP
	Interfaces []Interface
	Network    string // CNI network name
}

// Interface is one interface a plugin reported.
type Interface struct {
	Name    string
	MAC     string
	Sandbox string // netns path; "" for a host-side interface
}

// Setup runs CNI ADD for the sandbox on the pod network. When ADD fails (or the context
// expires mid-way) it runs DEL before returning, so no IP, veth or port mapping is left
// behind; the returned error is the plugin's, naming the network and the plugin.
func (m *Manager) Setup(ctx context.Context, req SetupRequest) (Result, error) {
	if err := req.validate(); err != nil {
		return Result{}, fmt.Errorf("cni setup: %w", err)
	}
	n := m.network()
	list, err := n.ready()
	if err != nil {
		return Result{}, fmt.Errorf("cni setup sandbox %s: %w", req.ID, err)
	}
	if err := m.prepareBridge(n); err != nil {
		return Result{}, fmt.Errorf("cni setup sandbox %s: pod cidr: %w", req.ID, err)
	}
	rt := m.runtimeConf(req)
	raw, err := m.cni.AddNetworkList(ctx, list, rt)
	if err == nil {
		var res Result
		if res, err = toResult(raw, m.opts.IfName); err == nil {
			res.Network = list.Name
			m.log.Debug("cni add", "sandbox", req.ID, "network", list.Name, "ips", res.IPs)
			return res, nil
		}
	}
	addErr := fmt.Errorf("cni add sandbox %s to network %q: %w", req.ID, list.Name, err)
	if ctxErr := ctx.Err(); ctxErr != nil {
		// The plugin was killed: say why, so the caller can map it to DeadlineExceeded.
		addErr = fmt.Errorf("%w: %w", addErr, ctxErr)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
	defer cancel()
	if delErr := m.cni.DelNetworkList(dctx, list, rt); delErr != nil {
		m.log.Error("cni del after failed add", "sandbox", req.ID, "network", list.Name, "error", delErr)
		return Result{}, errors.Join(addErr, fmt.Errorf("undo: cni del sandbox %s from network %q: %w", req.ID, list.Name, delErr))
	}
	return Result{}, addErr
}

// toResult converts a plugin result of any spec version and orders its IPs.
func toResult(raw types.Result, ifName string) (Result, error) {
	if raw == nil {
		return Result{}, fmt.Errorf("plugins returned no result")
	}
	r, err := current.NewResultFromResult(raw)
	if err != nil {
		return Result{}, fmt.Errorf("convert plugin result: %w", err)
	}
	var res Result
	for _, iface := range r.Interfaces {
		res.Interfaces = append(res.Interfaces, Interface{Name: iface.Name, MAC: iface.Mac, Sandbox: iface.Sandbox})
	}
	var v4, v6 []net.IP
	for _, ipc := range r.IPs {
		if !podAddress(r, ipc, ifName) {
			continue
		}
		if ip4 := ipc.Address.IP.To4(); ip4 != nil {
			v4 = append(v4, ip4)
		} else {
			v6 = append(v6, ipc.Address.IP)
		}
	}
	res.IPs = append(v4, v6...)
	if len(res.IPs) == 0 {
		return Result{}, fmt.Errorf("plugins assigned no IP address to %s", ifName)
	}
	return res, nil
}

// podAddress reports whether ipc belongs to the pod's interface: an IP whose interface index
// names the sandbox interface ifName, or one with no interface at all (older results).
func podAddress(r *current.Result, ipc *current.IPConfig, ifName string) bool {
	if ipc.Interface == nil {
		return true
	}
	i := *ipc.Interface
	if i < 0 || i >= len(r.Interfaces) {
		return false
	}
	return r.Interfaces[i].Sandbox != "" && r.Interfaces[i].Name == ifName
}

// delList runs DEL for one attachment; rt.NetNS may name a namespace that is gone, which the
// standard plugins accept (they still release the IP).
func (m *Manager) delList(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	if err := m.cni.DelNetworkList(ctx, list, rt); err != nil {
		return fmt.Errorf("cni del sandbox %s from network %q: %w", rt.ContainerID, list.Name, err)
	}
	// Whatever the plugin's DEL could not see (netns or interface gone) is released by name.
	return m.releaseMasq(ctx, list, rt.ContainerID)
}
