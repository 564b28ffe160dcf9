package spec

import (
	"fmt"
	"maps"
	"path"
	"path/filepath"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Generate builds the OCI runtime spec of container id.
//
// Security contexts: capabilities, seccomp (RuntimeDefault is moby's default profile), masked
// and read-only paths, no_new_privs, read-only rootfs, the process user and groups, privileged
// mode and the pod user namespace all apply; AppArmor and SELinux are checked against what the
// node can enforce (see AppArmor and SELinux). No rlimits are set (the agent's root lacks
// CAP_SYS_RESOURCE, so raising a hard limit fails). The stop signal is not part of the spec:
// the agent reads it from the image config.
func Generate(id string, cfg *runtimeapi.ContainerConfig, sb SandboxInfo, img ImageConfig, opts Options) (*specs.Spec, error) {
	if opts.CgroupsPath == "" && sb.CgroupParent != "" {
		// cgroups.ContainerPath's rule, inlined to keep this package free of cgroup libraries.
		opts.CgroupsPath = path.Join(sb.CgroupParent, id)
	}
	s, err := generate(cfg, sb, img, opts)
	if err != nil {
		return nil, fmt.Errorf("generate spec for container %s: %w", id, err)
	}
	return s, nil
}

func generate(cfg *runtimeapi.ContainerConfig, sb SandboxInfo, img ImageConfig, opts Options) (*specs.Spec, error) {
	if cfg == nil {
		return nil, fmt.Errorf("container config is nil: %w", errdefs.ErrInvalidArgument)
	}
	sc := cfg.GetLinux().GetSecurityContext()
	privileged := sc.GetPrivileged()
	if privileged && !sb.SecurityContext.GetPrivileged() {
		// The kubelet marks the pod privileged when any container is; anything else is a
		// request to escape the pod's confinement.
		return nil, fmt.Errorf("privileged container in unprivileged sandbox %s: %w", sb.ID, errdefs.ErrInvalidArgument)
	}

	args, err := Args(cfg, img)
	if err != nil {
		return nil, err
	}
	env, err := Env(cfg, img, sb.Hostname)
	if err != nil {
		return nil, err
	}
	rootfs := opts.RootfsPath
	if rootfs == "" {
		rootfs = "rootfs"
	}
	users := opts.Users
	if users == nil {
		if !filepath.IsAbs(rootfs) {
			return nil, fmt.Errorf("resolve user: rootfs path %q is not absolute: %w", rootfs, errdefs.ErrInvalidArgument)
		}
		users = RootfsUsers{Rootfs: rootfs}
	}
	if err := checkRunAsGroup(sc); err != nil {
		return nil, err
	}
	user, err := users.LookupUser(sc, img)
	if err != nil {
		return nil, err
	}
	caps, err := Capabilities(sc, opts.HostCapabilities)
	if err != nil {
		return nil, err
	}
	seccomp, err := SeccompWithDefault(sc, caps, opts.SeccompProfiles, opts.RuntimeDefaultSeccomp)
	if err != nil {
		return nil, err
	}
	apparmor, err := AppArmor(sc, opts.AppArmor)
	if err != nil {
		return nil, err
	}
	if err := SELinux(sc, opts.SELinuxEnabled); err != nil {
		return nil, err
	}
	mounts, rootPropagation, err := Mounts(cfg, sb, privileged, opts.ImageVolumes)
	if err != nil {
		return nil, err
	}
	if len(opts.AnonymousVolumes) > 0 {
		mounts = append(mounts, AnonymousVolumeMounts(opts.AnonymousVolumes)...)
		sortByDepth(mounts)
	}
	nss, err := Namespaces(sc.GetNamespaceOptions(), sb, opts)
	if err != nil {
		return nil, err
	}
	userns, err := containerUserNamespace(sc.GetNamespaceOptions(), sb)
	if err != nil {
		return nil, err
	}
	// Linux.UIDMappings stay empty: runc reads them from the joined namespace (and warns that
	// giving both is deprecated); the mounts carry their own copy.
	if userns.Enabled() {
		if err := checkUserNamespace(userns, sc, user); err != nil {
			return nil, err
		}
		idmapMounts(mounts, userns, opts.ImageVolumes, opts.AnonymousVolumes)
	}
	res, err := Resources(cfg.GetLinux().GetResources(), opts)
	if err != nil {
		return nil, err
	}
	var lookup DeviceLookup = HostDevices{}
	if opts.Devices != nil {
		lookup = opts.Devices
	}
	devs, rules, err := Devices(cfg, privileged, lookup)
	if err != nil {
		return nil, err
	}
	res.Devices = rules
	oomScoreAdj, err := oomScoreAdj(cfg.GetLinux().GetResources())
	if err != nil {
		return nil, err
	}
	masked, readonly := maskedAndReadonlyPaths(sc)

	return &specs.Spec{
		Version: specs.Version,
		Root:    &specs.Root{Path: rootfs, Readonly: sc.GetReadonlyRootfs()},
		Process: &specs.Process{
			Terminal:        cfg.GetTty(),
			User:            user,
			Args:            args,
			Env:             env,
			Cwd:             workingDir(cfg, img),
			Capabilities:    caps,
			NoNewPrivileges: sc.GetNoNewPrivs(),
			ApparmorProfile: apparmor,
			OOMScoreAdj:     oomScoreAdj,
		},
		Mounts:      mounts,
		Annotations: annotations(cfg, sb, opts),
		Linux: &specs.Linux{
			Namespaces:        nss,
			Seccomp:           seccomp,
			Resources:         res,
			CgroupsPath:       opts.CgroupsPath,
			Devices:           devs,
			MaskedPaths:       masked,
			ReadonlyPaths:     readonly,
			Sysctl:            maps.Clone(sb.Sysctls),
			RootfsPropagation: rootPropagation,
		},
	}, nil
}

// workingDir prefers the request, then the image, then /. OCI wants an absolute cwd; a relative
// one is taken relative to / as Docker does for images.
func workingDir(cfg *runtimeapi.ContainerConfig, img ImageConfig) string {
	wd := cfg.GetWorkingDir()
	if wd == "" {
		wd = img.WorkingDir
	}
	return path.Join("/", wd)
}

// oomScoreAdj passes the kubelet's value on; the agent may drop it when the kernel refuses a
// negative value (no CAP_SYS_RESOURCE).
func oomScoreAdj(r *runtimeapi.LinuxContainerResources) (*int, error) {
	if r == nil {
		return nil, nil
	}
	v := r.GetOomScoreAdj()
	if v < -1000 || v > 1000 {
		return nil, fmt.Errorf("oom_score_adj %d out of range [-1000, 1000]: %w", v, errdefs.ErrInvalidArgument)
	}
	return ptr(int(v)), nil
}
