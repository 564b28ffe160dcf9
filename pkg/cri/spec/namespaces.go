package spec

import (
	"fmt"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Namespaces returns the container's namespaces. A namespace missing from the list is the
// host's (runc then stays in the caller's, and the shim runs in the host namespaces).
//
// net, ipc and uts are the pod's: joined by path, or the host's for mode NODE or when the
// sandbox has no pinned namespace (CONTAINER, which the kubelet does not send, gets a new one). pid follows the CRI mode: POD joins the pod init's, CONTAINER
// gets a new one, TARGET joins another container's, NODE stays on the host. The mount namespace is
// always new; the cgroup namespace is new when opts.CgroupNS (cgroup v2). The user namespace is
// the pod's pinned one (SandboxInfo.UserNSPath) when the pod has user namespace mode POD.
func Namespaces(nsOpts *runtimeapi.NamespaceOption, sb SandboxInfo, opts Options) ([]specs.LinuxNamespace, error) {
	nss := []specs.LinuxNamespace{{Type: specs.MountNamespace}}

	userns, err := containerUserNamespace(nsOpts, sb)
	if err != nil {
		return nil, err
	}
	if userns.Enabled() {
		// The pod's net, ipc, uts and pid namespaces must be owned by its user namespace
		// (the kernel checks the owner to mount sysfs and proc), so runc cannot make a fresh
		// one here: the agent creates and pins it with the pod.
		if sb.UserNSPath == "" {
			return nil, fmt.Errorf("user namespace mode POD: sandbox %s has no user namespace: %w", sb.ID, errdefs.ErrFailedPrecondition)
		}
		nss = append(nss, specs.LinuxNamespace{Type: specs.UserNamespace, Path: sb.UserNSPath})
	}

	pid, err := pidNamespace(nsOpts, sb, opts)
	if err != nil {
		return nil, err
	}
	if pid != nil {
		nss = append(nss, *pid)
	}

	podNS := func(typ specs.LinuxNamespaceType, mode runtimeapi.NamespaceMode, p string) error {
		switch mode {
		case runtimeapi.NamespaceMode_NODE:
		case runtimeapi.NamespaceMode_CONTAINER:
			nss = append(nss, specs.LinuxNamespace{Type: typ})
		case runtimeapi.NamespaceMode_POD:
			if p != "" {
				nss = append(nss, specs.LinuxNamespace{Type: typ, Path: p})
			}
		default:
			return fmt.Errorf("%s namespace mode %v: %w", typ, mode, errdefs.ErrInvalidArgument)
		}
		return nil
	}
	if err := podNS(specs.NetworkNamespace, nsOpts.GetNetwork(), sb.NetNSPath); err != nil {
		return nil, err
	}
	if err := podNS(specs.IPCNamespace, nsOpts.GetIpc(), sb.IPCNSPath); err != nil {
		return nil, err
	}
	// UTS has no CRI mode of its own: the kubelet ties it to the network mode (host network
	// means host hostname), which the sandbox's pinned UTS path already reflects.
	if err := podNS(specs.UTSNamespace, nsOpts.GetNetwork(), sb.UTSNSPath); err != nil {
		return nil, err
	}

	if opts.CgroupNS {
		nss = append(nss, specs.LinuxNamespace{Type: specs.CgroupNamespace})
	}
	return nss, nil
}

func pidNamespace(nsOpts *runtimeapi.NamespaceOption, sb SandboxInfo, opts Options) (*specs.LinuxNamespace, error) {
	switch mode := nsOpts.GetPid(); mode {
	case runtimeapi.NamespaceMode_NODE:
		return nil, nil
	case runtimeapi.NamespaceMode_CONTAINER:
		return &specs.LinuxNamespace{Type: specs.PIDNamespace}, nil
	case runtimeapi.NamespaceMode_POD:
		if sb.PIDNSPath == "" {
			return nil, fmt.Errorf("pid namespace mode POD: sandbox %s has no pid namespace: %w", sb.ID, errdefs.ErrFailedPrecondition)
		}
		return &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: sb.PIDNSPath}, nil
	case runtimeapi.NamespaceMode_TARGET:
		if opts.TargetPIDNSPath == "" {
			return nil, fmt.Errorf("pid namespace mode TARGET: target %q has no pid namespace: %w", nsOpts.GetTargetId(), errdefs.ErrFailedPrecondition)
		}
		return &specs.LinuxNamespace{Type: specs.PIDNamespace, Path: opts.TargetPIDNSPath}, nil
	default:
		return nil, fmt.Errorf("pid namespace mode %v: %w", mode, errdefs.ErrInvalidArgument)
	}
}
