package cni

import (
	"encoding/json"
	"fmt"
	"net"
)

// defaultCNIVersion is the spec version of the synthesized network: 1.1.0 brings GC, which
// host-local (plugins v1.5+) implements to release reservations leaked by a crash.
const defaultCNIVersion = "1.1.0"

// defaultConfList builds the default bridge network for the given subnets (one host-local
// range set per subnet, so "v4,v6" is dual-stack).
//
// bridge: isGateway gives the bridge the first IP of each range and a default route in the
// pod; ipMasq lets pods reach the host's other addresses; hairpinMode lets a pod reach itself
// through its own hostPort. portmap with snat: for a hostPort dialled on 127.0.0.1 it
// sets net.ipv4.conf.<bridge>.route_localnet=1 (a 127/8 source may then cross to the bridge)
// and masquerades localhost-sourced traffic so the pod's reply comes back through the host.
// bandwidth applies the kubernetes.io/{ingress,egress}-bandwidth annotations; it is a no-op
// when a pod sets none.
func defaultConfList(name, bridge, dataDir string, subnets []*net.IPNet) ([]byte, error) {
	var ranges [][]map[string]string
	var routes []map[string]string
	for _, s := range subnets {
		ranges = append(ranges, []map[string]string{{"subnet": s.String()}})
		dst := "0.0.0.0/0"
		if s.IP.To4() == nil {
			dst = "::/0"
		}
		routes = append(routes, map[string]string{"dst": dst})
	}
	list := map[string]any{
		"cniVersion": defaultCNIVersion,
		"name":       name,
		"plugins": []any{
			map[string]any{
				"type":        "bridge",
				"bridge":      bridge,
				"isGateway":   true,
				"ipMasq":      true,
				"hairpinMode": true,
				"ipam": map[string]any{
					"type":    "host-local",
					"ranges":  ranges,
					"routes":  routes,
					"dataDir": dataDir,
				},
			},
			map[string]any{
				"type":         "portmap",
				"capabilities": map[string]bool{"portMappings": true},
				"snat":         true,
			},
			map[string]any{
				"type":         "bandwidth",
				"capabilities": map[string]bool{"bandwidth": true},
			},
		},
	}
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("marshal default network config: %w", err)
	}
	return b, nil
}
