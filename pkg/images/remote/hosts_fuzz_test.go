package remote

import (
	"strings"
	"testing"
)

// FuzzHostsFile feeds arbitrary hosts.toml text to the parser. Whatever the file says, the
// result is either an error or a list of usable endpoints: mirrors first, then exactly one
// upstream, each with an http(s) scheme and a host, and relative CA/cert paths resolved
// inside the registry's certs.d directory.
func FuzzHostsFile(f *testing.F) {
	for _, s := range []string{
		``,
		`server = "https://registry-1.docker.io"`,
		`server = "http://10.1.1.1:80"`,
		"server = \"https://registry-1.docker.io\"\n[host.\"http://127.0.0.1:5001\"]\n  capabilities = [\"pull\", \"resolve\"]\n" +
			"[host.\"https://mirror.b\"]\n  capabilities = [\"pull\"]\n  skip_verify = true\n  ca = \"ca.pem\"\n" +
			"  [host.\"https://mirror.b\".header]\n    X-Token = \"t\"\n    X-Multi = [\"a\", \"b\"]\n" +
			"[host.\"https://mirror.a\"]\n  ca = [\"/abs/ca1.pem\", \"rel.pem\"]\n",
		"[host.\"https://m\"]\nclient = [[\"c.pem\", \"k.pem\"], \"both.pem\"]\n",
		"[host.\"https://m/v2\"]\nclient = [\"c.pem\", \"k.pem\"]\n",
		"capabilities = []\nskip_verify = false\n[header]\nA = 1\n",
		`[host."ftp://m"]`,
		`[host."https://m/prefix"]`,
		`server = `,
		"[host.\"m\"]\n[host.\"m\"]\n",
		"host = 3",
	} {
		f.Add(s)
	}
	const dir = "/etc/berth/certs.d/example.com"
	f.Fuzz(func(t *testing.T, data string) {
		upstream := Host{Scheme: "https", Host: "example.com", Capabilities: Capabilities{Pull: true, Resolve: true}}
		hosts, err := parseHostsFile(dir+"/hosts.toml", []byte(data), upstream, Config{})
		if err != nil {
			if hosts != nil {
				t.Fatalf("error %v with hosts %v", err, hosts)
			}
			return
		}
		if len(hosts) == 0 {
			t.Fatal("no hosts and no error")
		}
		for i, h := range hosts {
			if h.Scheme != "http" && h.Scheme != "https" {
				t.Fatalf("host %d %v: scheme %q", i, h, h.Scheme)
			}
			if h.Host == "" {
				t.Fatalf("host %d %v: empty host", i, h)
			}
			if last := i == len(hosts)-1; h.Mirror == last {
				t.Fatalf("host %d of %d %v: Mirror=%v (mirrors first, the upstream last)", i, len(hosts), h, h.Mirror)
			}
			paths := append([]string(nil), h.CAs...)
			for _, c := range h.ClientCerts {
				paths = append(paths, c[0], c[1])
			}
			for _, p := range paths {
				if !strings.HasPrefix(p, "/") {
					t.Fatalf("host %v: path %q is not absolute", h, p)
				}
			}
		}
	})
}
