// Package reference parses image references the way the kubelet and docker send them and
// normalises them (busybox -> docker.io/library/busybox:latest); it also recognises image ids.
package reference

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/containerd/errdefs"
)

const (
	// DefaultDomain is the registry a short name refers to.
	DefaultDomain = "docker.io"
	// DefaultTag is the tag of a reference that names neither a tag nor a digest.
	DefaultTag = "latest"
	// maxNameLength is the limit of the distribution reference grammar.
	maxNameLength = 255
)

// The grammar is the one of github.com/distribution/reference, written out here because
// the kubelet's strings must be accepted and rejected exactly like docker/containerd do.
var (
	domainComponent = `(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])`
	domainRE        = regexp.MustCompile(`^(?:` + domainComponent + `(?:\.` + domainComponent + `)*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?$`)
	pathComponentRE = regexp.MustCompile(`^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*$`)
	tagRE           = regexp.MustCompile(`^[\w][\w.-]{0,127}$`)
	digestRE        = regexp.MustCompile(`^[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]{32,}$`)
	sha256HexRE     = regexp.MustCompile(`^[a-f0-9]{64}$`)
	hexRE           = regexp.MustCompile(`^[a-f0-9]+$`)
)

// Reference is a parsed, normalised image reference.
type Reference struct {
	Domain string // docker.io, 127.0.0.1:5000
	Path   string // library/busybox
	Tag    string // "" when pinned by digest only
	Digest string // sha256:<hex> or ""
}

// Name is domain/path without tag or digest: docker.io/library/busybox.
func (r Reference) Name() string { return r.Domain + "/" + r.Path }

// String is the canonical form: name[:tag][@digest].
func (r Reference) String() string {
	s := r.Name()
	if r.Tag != "" {
		s += ":" + r.Tag
	}
	if r.Digest != "" {
		s += "@" + r.Digest
	}
	return s
}

// Tagged is name:tag, or "" when the reference has no tag.
func (r Reference) Tagged() string {
	if r.Tag == "" {
		return ""
	}
	return r.Name() + ":" + r.Tag
}

// Digested is name@digest, or "" when the reference has no digest.
func (r Reference) Digested() string {
	if r.Digest == "" {
		return ""
	}
	return r.Name() + "@" + r.Digest
}

// Identifier is what a registry is asked for: the digest when there is one, else the tag.
func (r Reference) Identifier() string {
	if r.Digest != "" {
		return r.Digest
	}
	return r.Tag
}

// Parse parses and normalises s; a reference without tag or digest gets ":latest".
// A malformed reference is errdefs.ErrInvalidArgument.
func Parse(s string) (Reference, error) {
	r, err := parse(s)
	if err != nil {
		return Reference{}, fmt.Errorf("parse image reference %q: %w: %w", s, err, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// Normalize returns the canonical form of s: Normalize("busybox") = docker.io/library/busybox:latest.
func Normalize(s string) (string, error) {
	r, err := Parse(s)
	if err != nil {
		return "", err
	}
	return r.String(), nil
}

func parse(s string) (Reference, error) {
	if s == "" {
		return Reference{}, fmt.Errorf("empty reference")
	}
	var r Reference
	rest := s
	if i := strings.IndexByte(rest, '@'); i >= 0 {
		r.Digest = rest[i+1:]
		rest = rest[:i]
		if !digestRE.MatchString(r.Digest) {
			return Reference{}, fmt.Errorf("invalid digest %q", r.Digest)
		}
		if algo, hex, _ := strings.Cut(r.Digest, ":"); algo == "sha256" && !sha256HexRE.MatchString(hex) {
			return Reference{}, fmt.Errorf("invalid sha256 digest %q", r.Digest)
		}
	}
	// A tag is after the last colon, unless that colon belongs to the domain's port.
	if i := strings.LastIndexByte(rest, ':'); i >= 0 && !strings.Contains(rest[i+1:], "/") {
		r.Tag = rest[i+1:]
		rest = rest[:i]
		if !tagRE.MatchString(r.Tag) {
			return Reference{}, fmt.Errorf("invalid tag %q", r.Tag)
		}
	}
	domain, path := splitDomain(rest)
	if !domainRE.MatchString(domain) {
		return Reference{}, fmt.Errorf("invalid registry host %q", domain)
	}
	if path == "" {
		return Reference{}, fmt.Errorf("missing repository name")
	}
	for _, c := range strings.Split(path, "/") {
		if !pathComponentRE.MatchString(c) {
			return Reference{}, fmt.Errorf("invalid repository path component %q (must be lowercase)", c)
		}
	}
	if sha256HexRE.MatchString(path) && domain == DefaultDomain {
		return Reference{}, fmt.Errorf("repository name cannot be a 64-character hex string")
	}
	if domain == DefaultDomain && !strings.Contains(path, "/") {
		path = "library/" + path
	}
	r.Domain, r.Path = domain, path
	if len(r.Name()) > maxNameLength {
		return Reference{}, fmt.Errorf("repository name longer than %d characters", maxNameLength)
	}
	if r.Tag == "" && r.Digest == "" {
		r.Tag = DefaultTag
	}
	return r, nil
}

// splitDomain follows docker: the first component is a registry host only if it looks like
// one (has a dot or a port, or is localhost); otherwise the name lives on docker.io.
func splitDomain(name string) (domain, path string) {
	i := strings.IndexByte(name, '/')
	if i == -1 || (!strings.ContainsAny(name[:i], ".:") && name[:i] != "localhost" && strings.ToLower(name[:i]) == name[:i]) {
		return DefaultDomain, name
	}
	domain, path = name[:i], name[i+1:]
	if domain == "index.docker.io" || domain == "registry-1.docker.io" {
		domain = DefaultDomain
	}
	return domain, path
}

// ParseID recognises a full image id, "sha256:<64 hex>" or bare 64 hex, and returns it
// in "sha256:<hex>" form.
func ParseID(s string) (string, bool) {
	hex := strings.TrimPrefix(s, "sha256:")
	if !sha256HexRE.MatchString(hex) {
		return "", false
	}
	return "sha256:" + hex, true
}

// IDPrefix recognises a possibly truncated image id ("sha256:ab12", "ab12") and returns
// the hex prefix to search for.
func IDPrefix(s string) (string, bool) {
	hex := strings.TrimPrefix(s, "sha256:")
	if hex == "" || len(hex) > 64 || !hexRE.MatchString(hex) {
		return "", false
	}
	return hex, true
}

// IsDigested reports whether name (as stored, normalised) is a name@digest.
func IsDigested(name string) bool { return strings.Contains(name, "@") }
