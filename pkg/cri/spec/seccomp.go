package spec

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Values of the deprecated string fields seccomp_profile_path and apparmor_profile.
const (
	profileRuntimeDefault = "runtime/default"
	profileDockerDefault  = "docker/default" // seccomp only, kept by the kubelet for old pods
	profileUnconfined     = "unconfined"
	profileLocalhost      = "localhost/"
)

// maxSeccompProfileSize bounds a Localhost profile: the default profile is ~20 KiB.
const maxSeccompProfileSize = 1 << 20

// ProfileLoader reads a seccomp profile (Docker's JSON format) installed on the node.
type ProfileLoader interface {
	LoadSeccompProfile(path string) ([]byte, error)
}

// FileProfiles reads Localhost seccomp profiles from the node's filesystem.
type FileProfiles struct{}

// LoadSeccompProfile implements ProfileLoader. A missing file is errdefs.ErrNotFound.
func (FileProfiles) LoadSeccompProfile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("open %s: %w", path, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	return io.ReadAll(io.LimitReader(f, maxSeccompProfileSize))
}

// Seccomp returns the container's seccomp filter, nil for none. The profile comes from the
// seccomp field or, when that is absent, the deprecated seccomp_profile_path; absent both, the
// container is unconfined (the CRI default: the kubelet sends RuntimeDefault when it wants it).
// RuntimeDefault is moby's default profile, whose allowed syscalls depend on the container's
// bounding capabilities (CAP_SYS_ADMIN opens mount and friends), so caps must be final.
// Privileged containers are never filtered.
func Seccomp(sc *runtimeapi.LinuxContainerSecurityContext, caps *specs.LinuxCapabilities, loader ProfileLoader) (*specs.LinuxSeccomp, error) {
	return SeccompWithDefault(sc, caps, loader, nil)
}

// SeccompWithDefault is Seccomp where RuntimeDefault means runtimeDefault (a runtime
// handler's own profile: Unconfined, or Localhost naming a file) instead of moby's profile;
// nil keeps moby's. Requests for Unconfined or Localhost are not changed.
func SeccompWithDefault(sc *runtimeapi.LinuxContainerSecurityContext, caps *specs.LinuxCapabilities, loader ProfileLoader, runtimeDefault *runtimeapi.SecurityProfile) (*specs.LinuxSeccomp, error) {
	if sc.GetPrivileged() {
		return nil, nil
	}
	profile, err := seccompProfile(sc)
	if err != nil {
		return nil, err
	}
	if profile.GetProfileType() == runtimeapi.SecurityProfile_RuntimeDefault && runtimeDefault != nil {
		profile = runtimeDefault
	}
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	// The moby helpers read only Process.Capabilities of the spec they are given.
	s := &specs.Spec{Process: &specs.Process{Capabilities: caps}}
	switch profile.GetProfileType() {
	case runtimeapi.SecurityProfile_Unconfined:
		return nil, nil
	case runtimeapi.SecurityProfile_RuntimeDefault:
		sp, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return nil, fmt.Errorf("build the default seccomp profile: %w", err)
		}
		return sp, nil
	case runtimeapi.SecurityProfile_Localhost:
		return localhostSeccomp(profile.GetLocalhostRef(), s, loader)
	default:
		return nil, fmt.Errorf("seccomp profile type %v: %w", profile.GetProfileType(), errdefs.ErrInvalidArgument)
	}
}

// PodSeccomp returns the pod init's seccomp filter from the pod's security context, nil for
// none. The init runs with no capability a container could widen the default profile with,
// so RuntimeDefault is the profile for an empty capability set. A privileged pod is never
// filtered, as its privileged containers are not.
func PodSeccomp(sc *runtimeapi.LinuxSandboxSecurityContext, loader ProfileLoader) (*specs.LinuxSeccomp, error) {
	return Seccomp(&runtimeapi.LinuxContainerSecurityContext{
		Privileged:         sc.GetPrivileged(),
		Seccomp:            sc.GetSeccomp(),
		SeccompProfilePath: sc.GetSeccompProfilePath(),
	}, nil, loader)
}

// seccompProfile folds the deprecated string form into a SecurityProfile.
func seccompProfile(sc *runtimeapi.LinuxContainerSecurityContext) (*runtimeapi.SecurityProfile, error) {
	if p := sc.GetSeccomp(); p != nil {
		return p, nil
	}
	switch p := sc.GetSeccompProfilePath(); {
	case p == "" || p == profileUnconfined:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, nil
	case p == profileRuntimeDefault || p == profileDockerDefault:
		return &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, nil
	case strings.HasPrefix(p, profileLocalhost):
		return &runtimeapi.SecurityProfile{
			ProfileType:  runtimeapi.SecurityProfile_Localhost,
			LocalhostRef: strings.TrimPrefix(p, profileLocalhost),
		}, nil
	default:
		return nil, fmt.Errorf("seccomp profile %q: want %q, %q or %q<path>: %w",
			p, profileRuntimeDefault, profileUnconfined, profileLocalhost, errdefs.ErrInvalidArgument)
	}
}

// localhostSeccomp loads a profile installed on the node. Every failure is the caller's: the
// kubelet passes the path the pod named, so a wrong one must come back as InvalidArgument
// naming it rather than fail the container at start.
func localhostSeccomp(path string, s *specs.Spec, loader ProfileLoader) (*specs.LinuxSeccomp, error) {
	if path == "" || !filepath.IsAbs(path) {
		return nil, fmt.Errorf("seccomp profile %q: localhost profile must be an absolute path: %w", path, errdefs.ErrInvalidArgument)
	}
	if loader == nil {
		loader = FileProfiles{}
	}
	b, err := loader.LoadSeccompProfile(path)
	if err != nil {
		return nil, fmt.Errorf("load seccomp profile %q: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	sp, err := seccomp.LoadProfile(string(b), s)
	if err != nil {
		return nil, fmt.Errorf("parse seccomp profile %q: %v: %w", path, err, errdefs.ErrInvalidArgument)
	}
	return sp, nil
}
