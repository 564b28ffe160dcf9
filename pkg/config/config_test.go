package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoad(t *testing.T) {
	tests := []struct {
		name     string
		file     string // "" means no file
		optional bool
		wantErr  string
		check    func(t *testing.T, c Config)
	}{
		{name: "missing optional file gives defaults", optional: true, check: func(t *testing.T, c Config) {
			if c.Root != "/var/lib/berth" || c.Listen != "/run/berth/berth.sock" {
				t.Errorf("defaults not applied: %+v", c)
			}
		}},
		{name: "missing required file fails", wantErr: "read config"},
		{name: "values override defaults", file: "root = \"/x\"\n[images]\npull_progress_timeout = \"5s\"\n", check: func(t *testing.T, c Config) {
			if c.Root != "/x" || c.Images.PullProgressTimeout.Duration != 5*time.Second {
				t.Errorf("got root %q timeout %s", c.Root, c.Images.PullProgressTimeout)
			}
			if c.State != "/run/berth" {
				t.Errorf("unset key lost its default: %q", c.State)
			}
		}},
		{name: "network keys", file: "[network]\ndefault_subnet = \"10.99.0.0/24\"\ndefault_bridge = \"berthx\"\n", check: func(t *testing.T, c Config) {
			if c.Network.DefaultSubnet != "10.99.0.0/24" || c.Network.DefaultBridge != "berthx" {
				t.Errorf("got %+v", c.Network)
			}
			if c.Network.CNIConfDir != "/etc/cni/net.d" {
				t.Errorf("unset cni_conf_dir lost its default: %q", c.Network.CNIConfDir)
			}
		}},
		{name: "streaming keys", file: "[streaming]\naddress = \"127.0.0.1:10010\"\nidle_timeout = \"30m\"\n", check: func(t *testing.T, c Config) {
			if c.Streaming.Address != "127.0.0.1:10010" || c.Streaming.IdleTimeout.Duration != 30*time.Minute {
				t.Errorf("got %+v", c.Streaming)
			}
			if c.Streaming.StreamCreationTimeout.Duration != 30*time.Second {
				t.Errorf("unset stream_creation_timeout lost its default: %s", c.Streaming.StreamCreationTimeout)
			}
		}},
		{name: "streaming defaults to loopback", optional: true, check: func(t *testing.T, c Config) {
			if c.Streaming.Address != "127.0.0.1:0" {
				t.Errorf("default streaming address %q is not loopback with a free port", c.Streaming.Address)
			}
		}},
		{name: "unknown key is refused", file: "roots = \"/x\"\n", wantErr: "unknown keys: roots"},
		{name: "bad duration is refused", file: "[images]\npull_progress_timeout = \"soon\"\n", wantErr: "parse duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "config.toml")
			if tt.file != "" {
				if err := os.WriteFile(path, []byte(tt.file), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			c, err := Load(path, tt.optional)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, c)
		})
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "defaults are valid", mutate: func(*Config) {}},
		{name: "relative root", mutate: func(c *Config) { c.Root = "var/lib" }, wantErr: "root must be an absolute path"},
		{name: "bad driver", mutate: func(c *Config) { c.CgroupDriver = "cgroupfsx" }, wantErr: "cgroup_driver"},
		{name: "bad level", mutate: func(c *Config) { c.LogLevel = "loud" }, wantErr: "log_level"},
		{name: "bad default subnet", mutate: func(c *Config) { c.Network.DefaultSubnet = "10.88.0.0/33" }, wantErr: "default_subnet"},
		{name: "dual-stack default subnet", mutate: func(c *Config) { c.Network.DefaultSubnet = "10.88.0.0/16, fd88::/64" }},
		{name: "bridge name too long", mutate: func(c *Config) { c.Network.DefaultBridge = "berth-bridge-0123" }, wantErr: "default_bridge"},
		{name: "relative cni conf dir", mutate: func(c *Config) { c.Network.CNIConfDir = "net.d" }, wantErr: "cni_conf_dir"},
		{name: "relative cni bin dir", mutate: func(c *Config) { c.Network.CNIBinDirs = []string{"bin"} }, wantErr: "cni_bin_dirs"},
		{name: "streaming off", mutate: func(c *Config) { c.Streaming.Address = "" }},
		{name: "streaming on every address", mutate: func(c *Config) { c.Streaming.Address = ":10010" }},
		{name: "streaming on ipv6 loopback", mutate: func(c *Config) { c.Streaming.Address = "[::1]:0" }},
		{name: "streaming address without port", mutate: func(c *Config) { c.Streaming.Address = "127.0.0.1" }, wantErr: "streaming.address"},
		{name: "streaming address with a host name", mutate: func(c *Config) { c.Streaming.Address = "localhost:0" }, wantErr: "IP address"},
		{name: "streaming port out of range", mutate: func(c *Config) { c.Streaming.Address = "127.0.0.1:65536" }, wantErr: "port"},
		{name: "streaming port not a number", mutate: func(c *Config) { c.Streaming.Address = "127.0.0.1:http" }, wantErr: "port"},
		{name: "zero idle timeout", mutate: func(c *Config) { c.Streaming.IdleTimeout.Duration = 0 }, wantErr: "idle_timeout"},
		{name: "negative stream creation timeout", mutate: func(c *Config) { c.Streaming.StreamCreationTimeout.Duration = -time.Second }, wantErr: "stream_creation_timeout"},
		{name: "nri relative socket", mutate: func(c *Config) { c.NRI.SocketPath = "nri.sock" }, wantErr: "nri.socket_path"},
		{name: "nri off ignores its socket", mutate: func(c *Config) { c.NRI.Enable, c.NRI.SocketPath = false, "" }},
		{name: "nri zero request timeout", mutate: func(c *Config) { c.NRI.RequestTimeout.Duration = 0 }, wantErr: "nri.plugin_request_timeout"},
		{name: "zero downloads", mutate: func(c *Config) { c.Images.MaxConcurrentDownloads = 0 }, wantErr: "max_concurrent_downloads"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestStringRoundTrips(t *testing.T) {
	c := Default()
	c.Images.InsecureRegistries = []string{"reg.local:5000"}
	path := filepath.Join(t.TempDir(), "c.toml")
	if err := os.WriteFile(path, []byte(c.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path, false)
	if err != nil {
		t.Fatalf("load printed config: %v\n%s", err, c.String())
	}
	if got.String() != c.String() {
		t.Errorf("round trip changed config:\n%s\nvs\n%s", got.String(), c.String())
	}
}

func TestValidateMetrics(t *testing.T) {
	tests := []struct {
		name, addr string
		period     time.Duration
		wantErr    string
	}{
		{name: "off", addr: "", period: 10 * time.Second},
		{name: "loopback v4", addr: "127.0.0.1:9090", period: 10 * time.Second},
		{name: "loopback v6 any port", addr: "[::1]:0", period: time.Second},
		{name: "localhost", addr: "localhost:9090", period: 10 * time.Second},
		{name: "all interfaces", addr: ":9090", period: 10 * time.Second, wantErr: "loopback"},
		{name: "public", addr: "10.0.0.1:9090", period: 10 * time.Second, wantErr: "loopback"},
		{name: "no port", addr: "127.0.0.1", period: 10 * time.Second, wantErr: "metrics.address"},
		{name: "period too short", period: 100 * time.Millisecond, wantErr: "stats_period"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Metrics.Address, c.Metrics.StatsPeriod.Duration = tt.addr, tt.period
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestChanged(t *testing.T) {
	a := Default()
	b := Default()
	if got := Changed(a, b); len(got) != 0 {
		t.Fatalf("Changed(default, default) = %v", got)
	}
	b.LogLevel = "debug"
	b.Images.Pinned = []string{"busybox"}
	b.NRI.RequestTimeout = Duration{3 * time.Second}
	got := Changed(a, b)
	want := []string{"images.pinned", "log_level", "nri.plugin_request_timeout"}
	if !slices.Equal(got, want) {
		t.Fatalf("Changed = %v, want %v", got, want)
	}
}
