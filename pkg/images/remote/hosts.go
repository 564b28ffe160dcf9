// Package remote decides where and how images of a registry are fetched: containerd-style
// hosts.toml mirrors, TLS and plain-http policy, per-host transports and registry error classes.
package remote

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/BurntSushi/toml"
)

// DockerHubUpstream is the API endpoint behind the docker.io name.
const DockerHubUpstream = "registry-1.docker.io"

// Capabilities say what a host may be used for (containerd hosts.toml semantics).
type Capabilities struct{ Pull, Resolve bool }

// Host is one endpoint to try for a registry: a mirror or the upstream server.
type Host struct {
	Scheme       string // "http" or "https"
	Host         string // host[:port]; the repository path is kept unchanged on mirrors
	Capabilities Capabilities
	SkipVerify   bool
	CAs          []string // PEM files
	ClientCerts  [][2]string
	Header       http.Header
	Mirror       bool // false for the registry's own server
}

// String is the host's URL, used in errors and logs.
func (h Host) String() string { return h.Scheme + "://" + h.Host }

// Config is the node-wide registry policy.
type Config struct {
	CertsDir string   // directory with <registry-host>/hosts.toml
	Insecure []string // host[:port] allowed over plain http
}

type hostFile struct {
	Server       string         `toml:"server"`
	Capabilities []string       `toml:"capabilities"`
	SkipVerify   *bool          `toml:"skip_verify"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	Header       map[string]any `toml:"header"`
	Host         map[string]hostEntry
}

type hostEntry struct {
	Capabilities []string       `toml:"capabilities"`
	SkipVerify   *bool          `toml:"skip_verify"`
	CA           any            `toml:"ca"`
	Client       any            `toml:"client"`
	Header       map[string]any `toml:"header"`
}

// Hosts returns the endpoints for registry (a reference domain such as docker.io or
// 127.0.0.1:5000): the mirrors of its hosts.toml in file order, then the upstream server.
// hosts.toml is read on every call so that edits apply to the next pull.
func (c Config) Hosts(registry string) ([]Host, error) {
	upstream := Host{
		Scheme:       c.defaultScheme(registry),
		Host:         registry,
		Capabilities: Capabilities{Pull: true, Resolve: true},
	}
	if registry == "docker.io" {
		upstream.Host = DockerHubUpstream
		upstream.Scheme = "https"
	}
	path, data, err := c.readHostsFile(registry)
	if err != nil || data == nil {
		return []Host{upstream}, err
	}
	return parseHostsFile(path, data, upstream, c)
}

func (c Config) readHostsFile(registry string) (string, []byte, error) {
	if c.CertsDir == "" {
		return "", nil, nil
	}
	for _, dir := range []string{registry, strings.ReplaceAll(registry, ":", "_"), "_default"} {
		p := filepath.Join(c.CertsDir, dir, "hosts.toml")
		data, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return "", nil, fmt.Errorf("read %s: %w", p, err)
		}
		return p, data, nil
	}
	return "", nil, nil
}

func parseHostsFile(path string, data []byte, upstream Host, c Config) ([]Host, error) {
	var f hostFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	dir := filepath.Dir(path)
	if f.Server != "" {
		u, err := parseHostURL(f.Server)
		if err != nil {
			return nil, fmt.Errorf("parse %s: server: %w", path, err)
		}
		upstream.Scheme, upstream.Host = u.Scheme, u.Host
	}
	if err := applyEntry(&upstream, hostEntry{f.Capabilities, f.SkipVerify, f.CA, f.Client, f.Header}, dir); err != nil {
		return nil, fmt.Errorf("parse %s: server: %w", path, err)
	}
	var hosts []Host
	// md.Keys keeps document order, which is the order mirrors are tried in.
	seen := map[string]bool{}
	for _, k := range md.Keys() {
		if len(k) != 2 || k[0] != "host" || seen[k[1]] {
			continue
		}
		seen[k[1]] = true
		u, err := parseHostURL(k[1])
		if err != nil {
			return nil, fmt.Errorf("parse %s: host %q: %w", path, k[1], err)
		}
		h := Host{Scheme: u.Scheme, Host: u.Host, Capabilities: Capabilities{Pull: true, Resolve: true}, Mirror: true}
		if err := applyEntry(&h, f.Host[k[1]], dir); err != nil {
			return nil, fmt.Errorf("parse %s: host %q: %w", path, k[1], err)
		}
		hosts = append(hosts, h)
	}
	return append(hosts, upstream), nil
}

func parseHostURL(s string) (*url.URL, error) {
	if !strings.Contains(s, "://") {
		s = "https://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("unsupported scheme %q", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("missing host")
	}
	if p := strings.TrimSuffix(u.Path, "/"); p != "" && p != "/v2" {
		// Mirrors keep the repository path; an API prefix other than /v2 is not supported.
		return nil, fmt.Errorf("path %q not supported (mirrors keep the repository path)", u.Path)
	}
	return u, nil
}

func applyEntry(h *Host, e hostEntry, dir string) error {
	if e.Capabilities != nil {
		h.Capabilities = Capabilities{}
		for _, c := range e.Capabilities {
			switch c {
			case "pull":
				h.Capabilities.Pull = true
			case "resolve":
				h.Capabilities.Resolve = true
			case "push":
			default:
				return fmt.Errorf("unknown capability %q", c)
			}
		}
	}
	if e.SkipVerify != nil {
		h.SkipVerify = *e.SkipVerify
	}
	cas, err := stringList(e.CA)
	if err != nil {
		return fmt.Errorf("ca: %w", err)
	}
	for _, ca := range cas {
		h.CAs = append(h.CAs, resolvePath(dir, ca))
	}
	certs, err := clientCerts(e.Client, dir)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	h.ClientCerts = certs
	if len(e.Header) > 0 {
		h.Header = http.Header{}
		for k, v := range e.Header {
			vals, err := stringList(v)
			if err != nil {
				return fmt.Errorf("header %q: %w", k, err)
			}
			for _, val := range vals {
				h.Header.Add(k, val)
			}
		}
	}
	return nil
}

// clientCerts accepts "cert.pem" (cert and key in one file), ["cert", "key"] or a list of those.
func clientCerts(v any, dir string) ([][2]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		p := resolvePath(dir, x)
		return [][2]string{{p, p}}, nil
	case []any:
		if pair, err := stringList(x); err == nil && len(pair) == 2 && len(x) == 2 {
			if _, isList := x[0].([]any); !isList {
				return [][2]string{{resolvePath(dir, pair[0]), resolvePath(dir, pair[1])}}, nil
			}
		}
		var out [][2]string
		for _, item := range x {
			c, err := clientCerts(item, dir)
			if err != nil {
				return nil, err
			}
			out = append(out, c...)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a path or a [cert, key] list, got %T", v)
}

func stringList(v any) ([]string, error) {
	switch x := v.(type) {
	case nil:
		return nil, nil
	case string:
		return []string{x}, nil
	case []any:
		out := make([]string, 0, len(x))
		for _, item := range x {
			s, ok := item.(string)
			if !ok {
				return nil, fmt.Errorf("want strings, got %T", item)
			}
			out = append(out, s)
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a string or a list of strings, got %T", v)
}

func resolvePath(dir, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(dir, p)
}

// defaultScheme allows plain http only for loopback registries and those listed as insecure.
func (c Config) defaultScheme(registry string) string {
	if IsLoopback(registry) {
		return "http"
	}
	for _, h := range c.Insecure {
		if h == registry {
			return "http"
		}
	}
	return "https"
}

// IsLoopback reports whether host[:port] is localhost, 127.0.0.0/8 or ::1.
func IsLoopback(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
