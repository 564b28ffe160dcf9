package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/cri/spec"
)

// Runtime handlers are what a RuntimeClass names. Without configuration berth serves "" (no
// RuntimeClass) and "runc" (RuntimeClasses written for containerd's default handler), both
// the builtin runtime: libcontainer inside the pod's shim. [[runtime.handlers]] adds handlers
// with their own defaults (user namespaces allowed, disabled or required; what the seccomp
// profile RuntimeDefault means) or an external OCI runtime binary. Everything a handler needs
// is checked once, in New: a handler that cannot work fails the agent's startup, naming the
// handler and the setting, rather than every pod that names it later.

// ociRuntimeProbeTimeout bounds `<runtime> --version` at startup.
const ociRuntimeProbeTimeout = 5 * time.Second

// runtimeHandler is a handler as decided at startup.
type runtimeHandler struct {
	name string
	cfg  config.RuntimeHandler
	// features are what pods of this handler get (reported in Status).
	features HandlerFeatures
	// seccompDefault is what RuntimeDefault means for its containers; nil is moby's profile.
	seccompDefault *runtimeapi.SecurityProfile
	// version is the first line of an external runtime's `--version`.
	version string
	// ociVersion is what its containers' specs declare as ociVersion; "" keeps berth's own.
	ociVersion string
	// shimCgroups: the external runtime can be told to leave cgroups to the shim.
	shimCgroups bool
}

// runtimeHandlers is every handler berth serves, fixed at startup.
type runtimeHandlers struct {
	names  []string // Status order
	byName map[string]runtimeHandler
}

// newRuntimeHandlers decides every handler from the config and the node's features.
func newRuntimeHandlers(rc config.RuntimeConfig, node HandlerFeatures, log *slog.Logger) (runtimeHandlers, error) {
	hs := runtimeHandlers{byName: map[string]runtimeHandler{}}
	for _, name := range rc.HandlerNames() {
		cfg, _ := rc.Handler(name)
		h, err := newRuntimeHandler(name, cfg, node)
		if err != nil {
			return runtimeHandlers{}, fmt.Errorf("runtime handler %q: %w", name, err)
		}
		log.Info("runtime handler", "name", name, "runtime", h.runtime(), "version", h.version,
			"user_namespaces", h.features.UserNamespaces, "recursive_read_only_mounts", h.features.RecursiveReadOnlyMounts,
			"seccomp_default", cfg.SeccompProfile)
		hs.names = append(hs.names, name)
		hs.byName[name] = h
	}
	return hs, nil
}

func newRuntimeHandler(name string, cfg config.RuntimeHandler, node HandlerFeatures) (runtimeHandler, error) {
	h := runtimeHandler{name: name, cfg: cfg, features: node}
	if !cfg.IsBuiltin() {
		v, err := probeOCIRuntime(cfg.Runtime)
		if err != nil {
			return h, fmt.Errorf("runtime %s: %w", cfg.Runtime, err)
		}
		// The shim drives the binary through its command line: no user namespaces (the pod
		// init's user namespace is not handed to it) and no recursive read-only mounts
		// (not asked of it), so it advertises neither.
		h.version, h.features = v, HandlerFeatures{}
		h.ociVersion = probeOCIVersion(cfg.Runtime)
		h.shimCgroups = probeCgroupManagerDisabled(cfg.Runtime)
	}
	switch cfg.UserNSMode() {
	case config.UserNSDisabled:
		h.features.UserNamespaces = false
	case config.UserNSRequired:
		if !h.features.UserNamespaces {
			return h, fmt.Errorf("user_namespaces = %q, but pods of this handler cannot get a user namespace on this node (see the user namespace probe in the log): %w",
				config.UserNSRequired, errdefs.ErrFailedPrecondition)
		}
	}
	def, err := seccompDefault(cfg.SeccompProfile)
	if err != nil {
		return h, err
	}
	h.seccompDefault = def
	return h, nil
}

// ociRuntime is the external runtime binary its pods' shims drive; "" for the builtin one.
func (h runtimeHandler) ociRuntime() string {
	if h.cfg.IsBuiltin() {
		return ""
	}
	return h.cfg.Runtime
}

func (h runtimeHandler) runtime() string {
	if h.cfg.IsBuiltin() {
		return config.RuntimeBuiltin
	}
	return h.cfg.Runtime
}

// seccompDefault converts seccomp_profile; a profile file is loaded and parsed once here so
// that a broken one fails startup, not every container.
func seccompDefault(setting string) (*runtimeapi.SecurityProfile, error) {
	switch setting {
	case "":
		return nil, nil
	case config.SeccompUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	}
	p := &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: setting}
	sc := &runtimeapi.LinuxContainerSecurityContext{Seccomp: &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}}
	if _, err := spec.SeccompWithDefault(sc, nil, nil, p); err != nil {
		return nil, fmt.Errorf("seccomp_profile: %w", err)
	}
	return p, nil
}

// probeOCIRuntime checks that path is an executable that answers --version, and returns the
// answer's first line.
func probeOCIRuntime(path string) (string, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("binary: %w", err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("binary is not an executable file (mode %s): %w", fi.Mode(), errdefs.ErrFailedPrecondition)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ociRuntimeProbeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "--version").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) && len(ee.Stderr) > 0 {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("%s --version: %w", path, err)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	if first == "" {
		return "", fmt.Errorf("%s --version printed nothing: %w", path, errdefs.ErrFailedPrecondition)
	}
	return first, nil
}

// ociVersionFallback is declared to a runtime that has no features command (runtime-spec
// 1.1): a 1.x runtime reads every 1.0.x spec, while older ones refuse a newer ociVersion
// outright (crun before 1.9: "unknown version specified"). The fields a newer spec may hold
// and the runtime does not know are ignored by it; those berth relies on for isolation
// (user namespaces, recursive read-only mounts) are not offered on external handlers.
const ociVersionFallback = "1.0.2"

// probeOCIVersion decides the ociVersion the runtime's specs declare: berth's own when the
// runtime's features document says it reads it, else the newest it reads.
func probeOCIVersion(path string) string {
	ctx, cancel := context.WithTimeout(context.Background(), ociRuntimeProbeTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "features").Output()
	if err != nil {
		return ociVersionFallback
	}
	var f features.Features
	if err := json.Unmarshal(out, &f); err != nil || f.OCIVersionMax == "" {
		return ociVersionFallback
	}
	if !versionBefore(f.OCIVersionMax, specs.Version) {
		return ""
	}
	return f.OCIVersionMax
}

// probeCgroupManagerDisabled says whether the runtime takes --cgroup-manager=disabled (crun
// does, runc does not). Such a runtime gets it and the shim manages its containers' cgroups
// with the library libcontainer uses, so that they work on every node berth does: crun
// refuses a hybrid node whose cgroup v2 hierarchy holds controllers.
func probeCgroupManagerDisabled(path string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), ociRuntimeProbeTimeout)
	defer cancel()
	// The flag is the one the shim passes (pkg/runtime CgroupManagerDisabledFlag).
	return exec.CommandContext(ctx, path, "--cgroup-manager=disabled", "--version").Run() == nil
}

// versionBefore compares the numeric major.minor.patch of two spec versions.
func versionBefore(a, b string) bool {
	parse := func(v string) (n [3]int) {
		_, _ = fmt.Sscanf(v, "%d.%d.%d", &n[0], &n[1], &n[2])
		return n
	}
	na, nb := parse(a), parse(b)
	for i := range na {
		if na[i] != nb[i] {
			return na[i] < nb[i]
		}
	}
	return false
}

// lookup returns a handler berth serves; an unknown one is NotFound: running it with another
// runtime would give the pod an isolation its RuntimeClass did not ask for.
func (hs runtimeHandlers) lookup(name string) (runtimeHandler, error) {
	h, ok := hs.byName[name]
	if !ok {
		return h, fmt.Errorf("runtime handler %q is not configured (berth serves %q): %w", name, hs.names, errdefs.ErrNotFound)
	}
	return h, nil
}

// checkPod refuses, before anything is created, a pod its handler cannot run: a user
// namespace with an external runtime, or a user namespace setting the handler forbids.
func (h runtimeHandler) checkPod(userNS bool) error {
	if !h.cfg.IsBuiltin() && userNS {
		return fmt.Errorf("runtime handler %q: the external OCI runtime %s cannot run pods with a user namespace (hostUsers: false) yet: %w",
			h.name, h.cfg.Runtime, errdefs.ErrNotImplemented)
	}
	// With user_namespaces = "allowed" the pod's request goes ahead even where the probe
	// failed, as before handlers had settings: creating the namespace reports the cause.
	switch mode := h.cfg.UserNSMode(); {
	case userNS && mode == config.UserNSDisabled:
		return fmt.Errorf("runtime handler %q gives pods no user namespace (user_namespaces = %q): %w", h.name, mode, errdefs.ErrFailedPrecondition)
	case !userNS && mode == config.UserNSRequired:
		return fmt.Errorf("runtime handler %q requires a pod user namespace (hostUsers: false): %w", h.name, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// status lists every handler with the features its pods get.
func (hs runtimeHandlers) status() []*runtimeapi.RuntimeHandler {
	out := make([]*runtimeapi.RuntimeHandler, 0, len(hs.names))
	for _, name := range hs.names {
		f := hs.byName[name].features
		out = append(out, &runtimeapi.RuntimeHandler{
			Name: name,
			Features: &runtimeapi.RuntimeHandlerFeatures{
				RecursiveReadOnlyMounts: f.RecursiveReadOnlyMounts,
				UserNamespaces:          f.UserNamespaces,
			},
		})
	}
	return out
}
