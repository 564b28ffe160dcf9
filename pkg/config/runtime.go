package config

import (
	"fmt"
	"path/filepath"
	"regexp"
)

// RuntimeBuiltin names the runtime berth carries: libcontainer inside the pod's shim.
const RuntimeBuiltin = "builtin"

// Values of RuntimeHandler.UserNamespaces.
const (
	UserNSAllowed  = "allowed"  // the kubelet decides per pod (hostUsers)
	UserNSDisabled = "disabled" // pods asking for one are refused; Status says the handler has none
	UserNSRequired = "required" // pods without one are refused
)

// SeccompUnconfined as RuntimeHandler.SeccompProfile makes RuntimeDefault mean no filter.
const SeccompUnconfined = "unconfined"

// BuiltinHandlers are served when not configured: "" (no RuntimeClass) and "runc" (what
// RuntimeClasses written for containerd name), both the builtin runtime with no overrides.
var BuiltinHandlers = []string{"", "runc"}

// RuntimeConfig configures the runtime handlers the kubelet can name in a RuntimeClass.
type RuntimeConfig struct {
	// DefaultHandler serves pods with no RuntimeClass (handler ""): "runc" or a configured name.
	DefaultHandler string `toml:"default_handler"`
	// Handlers add handlers, or replace "runc", as [[runtime.handlers]] tables.
	Handlers []RuntimeHandler `toml:"handlers"`
}

// RuntimeHandler is one [[runtime.handlers]] table.
type RuntimeHandler struct {
	// Name is what a RuntimeClass's handler field says (a DNS label, as Kubernetes requires).
	Name string `toml:"name"`
	// Runtime is "builtin" (the default: libcontainer in the pod's shim) or the absolute path
	// of an external OCI runtime binary (crun, the runc CLI).
	Runtime string `toml:"runtime"`
	// UserNamespaces is allowed (the default), disabled or required.
	UserNamespaces string `toml:"user_namespaces"`
	// SeccompProfile is what the seccomp profile RuntimeDefault means for this handler's
	// containers: "" for berth's default (moby's), "unconfined", or the absolute path of a
	// profile in Docker's JSON format. Unconfined and Localhost requests are not changed.
	SeccompProfile string `toml:"seccomp_profile"`
}

// UserNSMode is UserNamespaces with its default applied.
func (h RuntimeHandler) UserNSMode() string {
	if h.UserNamespaces == "" {
		return UserNSAllowed
	}
	return h.UserNamespaces
}

// IsBuiltin says whether the handler runs containers with the builtin runtime.
func (h RuntimeHandler) IsBuiltin() bool { return h.Runtime == "" || h.Runtime == RuntimeBuiltin }

// dnsLabel is Kubernetes' RFC 1123 label, which RuntimeClass.handler must be.
var dnsLabel = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// Handler returns the settings of a handler the kubelet may name; false when berth does not
// serve it. "" resolves to DefaultHandler; unconfigured built-in names get the defaults.
func (r RuntimeConfig) Handler(name string) (RuntimeHandler, bool) {
	lookup := name
	if name == "" && r.DefaultHandler != "" {
		lookup = r.DefaultHandler
	}
	for _, h := range r.Handlers {
		if h.Name == lookup {
			return h, true
		}
	}
	for _, b := range BuiltinHandlers {
		if b == lookup {
			return RuntimeHandler{Name: lookup, Runtime: RuntimeBuiltin, UserNamespaces: UserNSAllowed}, true
		}
	}
	return RuntimeHandler{}, false
}

// HandlerNames lists every handler berth serves: the built-in ones, then the configured ones.
func (r RuntimeConfig) HandlerNames() []string {
	names := append([]string(nil), BuiltinHandlers...)
	for _, h := range r.Handlers {
		if h.Name != "runc" {
			names = append(names, h.Name)
		}
	}
	return names
}

func (r RuntimeConfig) validate() error {
	seen := map[string]bool{}
	for i, h := range r.Handlers {
		if err := h.validate(); err != nil {
			return fmt.Errorf("config: runtime.handlers[%d]: %w", i, err)
		}
		if seen[h.Name] {
			return fmt.Errorf("config: runtime.handlers[%d]: handler %q is configured twice", i, h.Name)
		}
		seen[h.Name] = true
	}
	if r.DefaultHandler != "" {
		if _, ok := r.Handler(r.DefaultHandler); !ok {
			return fmt.Errorf("config: runtime.default_handler %q is not a configured handler", r.DefaultHandler)
		}
	}
	return nil
}

func (h RuntimeHandler) validate() error {
	if len(h.Name) > 63 || !dnsLabel.MatchString(h.Name) {
		return fmt.Errorf("name %q must be a DNS label (lowercase letters, digits, '-', at most 63)", h.Name)
	}
	if !h.IsBuiltin() && !filepath.IsAbs(h.Runtime) {
		return fmt.Errorf("handler %q: runtime %q must be %q or the absolute path of an OCI runtime binary", h.Name, h.Runtime, RuntimeBuiltin)
	}
	switch h.UserNamespaces {
	case "", UserNSAllowed, UserNSDisabled, UserNSRequired:
	default:
		return fmt.Errorf("handler %q: user_namespaces %q is not one of %s, %s, %s", h.Name, h.UserNamespaces, UserNSAllowed, UserNSDisabled, UserNSRequired)
	}
	if p := h.SeccompProfile; p != "" && p != SeccompUnconfined && !filepath.IsAbs(p) {
		return fmt.Errorf("handler %q: seccomp_profile %q must be %q or an absolute path", h.Name, p, SeccompUnconfined)
	}
	return nil
}
