// Package config holds berth's settings: defaults, the TOML file at /etc/berth/config.toml
// and validation. Flags override the file; with no file at all the defaults apply.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// DefaultPath is where the agent looks for its config file.
const DefaultPath = "/etc/berth/config.toml"

// Config is every setting of the agent. It is plain data: the agent wires
// managers from it, nothing here holds live state.
type Config struct {
	// Root holds persistent state: images, snapshots, metadata.
	Root string `toml:"root"`
	// State holds runtime state: sockets, pinned namespaces, bundles.
	State string `toml:"state"`
	// Listen is the unix socket the CRI is served on.
	Listen string `toml:"listen"`
	// ShimBinary is the berth-shim path; empty means beside the agent, then $PATH.
	ShimBinary string `toml:"shim_binary"`
	// LogLevel is one of debug, info, warn, error.
	LogLevel string `toml:"log_level"`
	// LogFormat is text or json.
	LogFormat string `toml:"log_format"`
	// CgroupDriver is cgroupfs or systemd (systemd only where systemd is PID 1).
	CgroupDriver string `toml:"cgroup_driver"`

	Images    ImagesConfig    `toml:"images"`
	Network   NetworkConfig   `toml:"network"`
	Streaming StreamingConfig `toml:"streaming"`
	Metrics   MetricsConfig   `toml:"metrics"`
	NRI       NRIConfig       `toml:"nri"`
	Runtime   RuntimeConfig   `toml:"runtime"`
}

// NRIConfig configures the Node Resource Interface (github.com/containerd/nri): plugins that
// connect to SocketPath see pod and container events and may adjust containers.
type NRIConfig struct {
	// Enable serves NRI. With no plugin connected it costs nothing and blocks nothing.
	Enable bool `toml:"enable"`
	// SocketPath is where external plugins connect.
	SocketPath string `toml:"socket_path"`
	// PluginPath holds pre-installed plugins the agent launches; PluginConfigPath their configs.
	PluginPath       string `toml:"plugin_path"`
	PluginConfigPath string `toml:"plugin_config_path"`
	// RegistrationTimeout bounds a plugin's registration; RequestTimeout each plugin call.
	RegistrationTimeout Duration `toml:"plugin_registration_timeout"`
	RequestTimeout      Duration `toml:"plugin_request_timeout"`
}

// MetricsConfig configures stats collection and the Prometheus endpoint.
type MetricsConfig struct {
	// Address serves /metrics and /debug/pprof/ over http; "" (the default) serves nothing.
	// It must be a loopback host:port: the endpoints are unauthenticated and pprof exposes
	// the agent's memory. Port 0 picks a free port, written to <state>/metrics.addr.
	Address string `toml:"address"`
	// StatsPeriod is how often container and pod stats are sampled in the background.
	StatsPeriod Duration `toml:"stats_period"`
}

// ImagesConfig configures pulls and the image store.
type ImagesConfig struct {
	// CertsDir holds one <registry-host>/hosts.toml per registry (mirrors, CAs, headers).
	CertsDir string `toml:"certs_dir"`
	// InsecureRegistries may be reached over plain http (loopback registries always may).
	InsecureRegistries []string `toml:"insecure_registries"`
	// PullProgressTimeout fails a pull that receives no bytes for this long.
	PullProgressTimeout Duration `toml:"pull_progress_timeout"`
	// MaxConcurrentDownloads bounds parallel layer downloads per pull.
	MaxConcurrentDownloads int `toml:"max_concurrent_downloads"`
	// Pinned names images (references or ids) reported as pinned: the kubelet's image
	// garbage collection never removes them. An explicit RemoveImage still does.
	Pinned []string `toml:"pinned"`
}

// NetworkConfig configures pod networking.
type NetworkConfig struct {
	// CNIConfDir holds the network configs; the first valid one is the pod network.
	CNIConfDir string `toml:"cni_conf_dir"`
	// CNIBinDirs are searched in order for plugin binaries.
	CNIBinDirs []string `toml:"cni_bin_dirs"`
	// DefaultSubnet is the pod subnet of the bridge network used when CNIConfDir has no
	// config at all (comma-separated for dual-stack); the kubelet's pod CIDR overrides it.
	DefaultSubnet string `toml:"default_subnet"`
	// DefaultBridge names that network's Linux bridge (at most 15 bytes).
	DefaultBridge string `toml:"default_bridge"`
}

// StreamingConfig configures the HTTP server behind exec, attach and port-forward.
type StreamingConfig struct {
	// Address is the host:port it listens on. The default is loopback only: the server has no
	// authentication, so whoever reaches it can exec in any container. Port 0 picks a free one;
	// "" turns exec, attach and port-forward off (they answer Unavailable).
	Address string `toml:"address"`
	// IdleTimeout closes a stream connection with no traffic for this long.
	IdleTimeout Duration `toml:"idle_timeout"`
	// StreamCreationTimeout bounds the wait for a client to open its streams after connecting.
	StreamCreationTimeout Duration `toml:"stream_creation_timeout"`
}

// Duration is a time.Duration that reads "1m30s" from TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("parse duration %q: %w", b, err)
	}
	d.Duration = v
	return nil
}

// MarshalText prints the duration as Go does.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.Duration.String()), nil }

// Default returns the settings used when nothing is configured.
func Default() Config {
	return Config{
		Root:         "/var/lib/berth",
		State:        "/run/berth",
		Listen:       "/run/berth/berth.sock",
		LogLevel:     "info",
		LogFormat:    "text",
		CgroupDriver: "cgroupfs",
		Images: ImagesConfig{
			CertsDir:               "/etc/berth/certs.d",
			PullProgressTimeout:    Duration{time.Minute},
			MaxConcurrentDownloads: 3,
		},
		Network: NetworkConfig{
			CNIConfDir:    "/etc/cni/net.d",
			CNIBinDirs:    []string{"/opt/cni/bin"},
			DefaultSubnet: "10.88.0.0/16",
			DefaultBridge: "berth0",
		},
		// The kubelet's own defaults (k8s.io/cri-streaming DefaultConfig).
		Streaming: StreamingConfig{
			Address:               "127.0.0.1:0",
			IdleTimeout:           Duration{4 * time.Hour},
			StreamCreationTimeout: Duration{30 * time.Second},
		},
		Metrics: MetricsConfig{StatsPeriod: Duration{10 * time.Second}},
		// containerd's defaults, so NRI plugins built for containerd find berth.
		NRI: NRIConfig{
			Enable:              true,
			SocketPath:          "/var/run/nri/nri.sock",
			PluginPath:          "/opt/nri/plugins",
			PluginConfigPath:    "/etc/nri/conf.d",
			RegistrationTimeout: Duration{5 * time.Second},
			RequestTimeout:      Duration{2 * time.Second},
		},
	}
}

// Load reads path over the defaults. A missing file is not an error when
// optional is true (the default path may simply not exist).
func Load(path string, optional bool) (Config, error) {
	cfg := Default()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && optional {
		return cfg, nil
	}
	if err != nil {
		return cfg, fmt.Errorf("read config %s: %w", path, err)
	}
	md, err := toml.Decode(string(data), &cfg)
	if err != nil {
		return cfg, fmt.Errorf("parse config %s: %w", path, err)
	}
	// Unknown keys are usually typos of real ones; failing loudly beats silently ignoring them.
	if undec := md.Undecoded(); len(undec) > 0 {
		keys := make([]string, len(undec))
		for i, k := range undec {
			keys[i] = k.String()
		}
		return cfg, fmt.Errorf("config %s: unknown keys: %s", path, strings.Join(keys, ", "))
	}
	return cfg, nil
}

// Validate reports the first setting that cannot work.
func (c Config) Validate() error {
	for name, p := range map[string]string{"root": c.Root, "state": c.State, "listen": c.Listen} {
		if p == "" || !filepath.IsAbs(p) {
			return fmt.Errorf("config: %s must be an absolute path, got %q", name, p)
		}
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: log_level %q is not one of debug, info, warn, error", c.LogLevel)
	}
	switch c.LogFormat {
	case "text", "json":
	default:
		return fmt.Errorf("config: log_format %q is not one of text, json", c.LogFormat)
	}
	switch c.CgroupDriver {
	case "cgroupfs", "systemd":
	default:
		return fmt.Errorf("config: cgroup_driver %q is not one of cgroupfs, systemd", c.CgroupDriver)
	}
	if c.Images.MaxConcurrentDownloads < 1 {
		return fmt.Errorf("config: images.max_concurrent_downloads must be at least 1, got %d", c.Images.MaxConcurrentDownloads)
	}
	if err := c.Network.validate(); err != nil {
		return err
	}
	if err := c.Streaming.validate(); err != nil {
		return err
	}
	if c.Images.PullProgressTimeout.Duration <= 0 {
		return fmt.Errorf("config: images.pull_progress_timeout must be positive, got %s", c.Images.PullProgressTimeout.Duration)
	}
	if err := c.NRI.validate(); err != nil {
		return err
	}
	if err := c.Runtime.validate(); err != nil {
		return err
	}
	return c.Metrics.validate()
}

func (n NRIConfig) validate() error {
	if !n.Enable {
		return nil
	}
	if !filepath.IsAbs(n.SocketPath) {
		return fmt.Errorf("config: nri.socket_path must be an absolute path, got %q", n.SocketPath)
	}
	if n.RegistrationTimeout.Duration <= 0 || n.RequestTimeout.Duration <= 0 {
		return fmt.Errorf("config: nri.plugin_registration_timeout and nri.plugin_request_timeout must be positive")
	}
	return nil
}

func (m MetricsConfig) validate() error {
	if m.StatsPeriod.Duration < time.Second {
		return fmt.Errorf("config: metrics.stats_period must be at least 1s, got %s", m.StatsPeriod.Duration)
	}
	if m.Address == "" {
		return nil
	}
	host, _, err := net.SplitHostPort(m.Address)
	if err != nil {
		return fmt.Errorf("config: metrics.address %q: %w", m.Address, err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return fmt.Errorf("config: metrics.address %q must be on a loopback address (127.0.0.1, [::1], localhost)", m.Address)
	}
	return nil
}

// String renders the config as TOML, for `berth config`.
func (c Config) String() string {
	var b strings.Builder
	if err := toml.NewEncoder(&b).Encode(c); err != nil {
		return fmt.Sprintf("# cannot encode config: %v\n", err)
	}
	return b.String()
}

func (n NetworkConfig) validate() error {
	if n.CNIConfDir != "" && !filepath.IsAbs(n.CNIConfDir) {
		return fmt.Errorf("config: network.cni_conf_dir must be an absolute path, got %q", n.CNIConfDir)
	}
	for _, d := range n.CNIBinDirs {
		if !filepath.IsAbs(d) {
			return fmt.Errorf("config: network.cni_bin_dirs must hold absolute paths, got %q", d)
		}
	}
	if n.DefaultSubnet != "" {
		for _, part := range strings.Split(n.DefaultSubnet, ",") {
			if _, _, err := net.ParseCIDR(strings.TrimSpace(part)); err != nil {
				return fmt.Errorf("config: network.default_subnet %q: %w", n.DefaultSubnet, err)
			}
		}
	}
	// IFNAMSIZ is 16 bytes with the NUL.
	if len(n.DefaultBridge) > 15 || strings.ContainsAny(n.DefaultBridge, "/ \t\n") {
		return fmt.Errorf("config: network.default_bridge %q is not a valid interface name", n.DefaultBridge)
	}
	return nil
}

func (s StreamingConfig) validate() error {
	if s.Address == "" {
		return nil
	}
	host, port, err := net.SplitHostPort(s.Address)
	if err != nil {
		return fmt.Errorf("config: streaming.address %q: %w", s.Address, err)
	}
	// An IP literal (or "" for every address): resolving a name at startup would make the
	// listening address depend on DNS.
	if host != "" && net.ParseIP(host) == nil {
		return fmt.Errorf("config: streaming.address %q: host must be an IP address", s.Address)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("config: streaming.address %q: port must be 0-65535", s.Address)
	}
	if s.IdleTimeout.Duration <= 0 {
		return fmt.Errorf("config: streaming.idle_timeout must be positive, got %s", s.IdleTimeout.Duration)
	}
	if s.StreamCreationTimeout.Duration <= 0 {
		return fmt.Errorf("config: streaming.stream_creation_timeout must be positive, got %s", s.StreamCreationTimeout.Duration)
	}
	return nil
}
