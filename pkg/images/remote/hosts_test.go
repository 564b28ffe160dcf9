package remote

import (
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestHosts(t *testing.T) {
	all := Capabilities{Pull: true, Resolve: true}
	tests := []struct {
		name     string
		registry string
		dir      string // hosts dir name, "" for none
		file     string
		insecure []string
		want     []Host
		wantErr  bool
	}{
		{name: "no file docker hub", registry: "docker.io",
			want: []Host{{Scheme: "https", Host: "registry-1.docker.io", Capabilities: all}}},
		{name: "no file loopback is http", registry: "127.0.0.1:5000",
			want: []Host{{Scheme: "http", Host: "127.0.0.1:5000", Capabilities: all}}},
		{name: "localhost is http", registry: "localhost:5000",
			want: []Host{{Scheme: "http", Host: "localhost:5000", Capabilities: all}}},
		{name: "ipv6 loopback is http", registry: "[::1]:5000",
			want: []Host{{Scheme: "http", Host: "[::1]:5000", Capabilities: all}}},
		{name: "private address stays https", registry: "10.0.0.1:5000",
			want: []Host{{Scheme: "https", Host: "10.0.0.1:5000", Capabilities: all}}},
		{name: "listed insecure", registry: "10.0.0.1:5000", insecure: []string{"10.0.0.1:5000"},
			want: []Host{{Scheme: "http", Host: "10.0.0.1:5000", Capabilities: all}}},
		{name: "mirrors in file order then upstream", registry: "docker.io", dir: "docker.io", file: `
server = "https://registry-1.docker.io"
[host."http://127.0.0.1:5001"]
  capabilities = ["pull", "resolve"]
[host."https://mirror.b"]
  capabilities = ["pull"]
  skip_verify = true
  ca = "ca.pem"
  [host."https://mirror.b".header]
    X-Token = "t"
    X-Multi = ["a", "b"]
[host."https://mirror.a"]
  ca = ["/abs/ca1.pem", "rel.pem"]
`,
			want: []Host{
				{Scheme: "http", Host: "127.0.0.1:5001", Capabilities: all, Mirror: true},
				{Scheme: "https", Host: "mirror.b", Capabilities: Capabilities{Pull: true}, SkipVerify: true, Mirror: true,
					CAs: []string{"DIR/ca.pem"}, Header: http.Header{"X-Token": {"t"}, "X-Multi": {"a", "b"}}},
				{Scheme: "https", Host: "mirror.a", Capabilities: all, Mirror: true, CAs: []string{"/abs/ca1.pem", "DIR/rel.pem"}},
				{Scheme: "https", Host: "registry-1.docker.io", Capabilities: all},
			}},
		{name: "server override", registry: "example.com", dir: "example.com", file: `server = "http://10.1.1.1:80"`,
			want: []Host{{Scheme: "http", Host: "10.1.1.1:80", Capabilities: all}}},
		{name: "port dir with underscore", registry: "reg.local:5000", dir: "reg.local_5000", file: `[host."https://m"]`,
			want: []Host{{Scheme: "https", Host: "m", Capabilities: all, Mirror: true}, {Scheme: "https", Host: "reg.local:5000", Capabilities: all}}},
		{name: "default dir", registry: "quay.io", dir: "_default", file: `[host."https://m"]`,
			want: []Host{{Scheme: "https", Host: "m", Capabilities: all, Mirror: true}, {Scheme: "https", Host: "quay.io", Capabilities: all}}},
		{name: "bad toml", registry: "quay.io", dir: "quay.io", file: `server = `, wantErr: true},
		{name: "bad capability", registry: "quay.io", dir: "quay.io", file: "[host.\"https://m\"]\ncapabilities = [\"fly\"]", wantErr: true},
		{name: "bad scheme", registry: "quay.io", dir: "quay.io", file: `[host."ftp://m"]`, wantErr: true},
		{name: "path prefix", registry: "quay.io", dir: "quay.io", file: `[host."https://m/prefix"]`, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certs := t.TempDir()
			dir := filepath.Join(certs, tt.dir)
			if tt.dir != "" {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, "hosts.toml"), []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Config{CertsDir: certs, Insecure: tt.insecure}.Hosts(tt.registry)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("want error, got %+v", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for i := range tt.want {
				for j, ca := range tt.want[i].CAs {
					if !filepath.IsAbs(ca) || ca[:4] == "DIR/" {
						tt.want[i].CAs[j] = filepath.Join(dir, ca[4:])
					}
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Hosts(%q) =\n%+v\nwant\n%+v", tt.registry, got, tt.want)
			}
		})
	}
}
