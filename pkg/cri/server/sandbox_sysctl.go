package server

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cri/store"
)

// ipcSysctls are the namespaced IPC sysctls (ipc_namespaces(7)); fs.mqueue.* is matched by
// prefix.
var ipcSysctls = map[string]bool{
	"kernel.msgmax": true, "kernel.msgmnb": true, "kernel.msgmni": true, "kernel.sem": true,
	"kernel.shmall": true, "kernel.shmmax": true, "kernel.shmmni": true, "kernel.shm_rmid_forced": true,
}

type sysctlNS int

const (
	sysctlIPC sysctlNS = iota
	sysctlNet
)

// classifySysctl reports which pod namespace a sysctl belongs to. Any other sysctl is node
// wide, and setting it for one pod would change every pod.
func classifySysctl(name string) (sysctlNS, bool) {
	name = strings.ReplaceAll(name, "/", ".")
	switch {
	case ipcSysctls[name], strings.HasPrefix(name, "fs.mqueue."):
		return sysctlIPC, true
	case strings.HasPrefix(name, "net."):
		return sysctlNet, true
	}
	return 0, false
}

// validateSysctls checks the pod's sysctls: only namespaced ones, net.* only with a pod
// network namespace, ipc ones only with a pod ipc namespace.
func validateSysctls(cfg *runtimeapi.PodSandboxConfig) (map[string]string, error) {
	in := cfg.GetLinux().GetSysctls()
	for name := range in {
		ns, ok := classifySysctl(name)
		switch {
		case !ok:
			return nil, fmt.Errorf("sysctl %q is not namespaced: %w", name, errdefs.ErrInvalidArgument)
		case ns == sysctlNet && hostNetwork(cfg):
			return nil, fmt.Errorf("sysctl %q needs a pod network namespace, the pod uses the host network: %w", name, errdefs.ErrInvalidArgument)
		case ns == sysctlIPC && hostIPC(cfg):
			return nil, fmt.Errorf("sysctl %q needs a pod ipc namespace, the pod uses the host ipc: %w", name, errdefs.ErrInvalidArgument)
		}
	}
	return in, nil
}

// applySysctls writes each sysctl inside the pinned namespace it belongs to, so containers
// joining the pod see it, and a failure surfaces at RunPodSandbox rather than at the first
// container start.
func (s *Service) applySysctls(md store.SandboxMetadata, sysctls map[string]string) error {
	names := make([]string, 0, len(sysctls))
	for n := range sysctls {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, name := range names {
		ns, _ := classifySysctl(name)
		nsPath := md.IPCNS
		if ns == sysctlNet {
			nsPath = md.NetNS
		}
		file := filepath.Join(s.procSys, strings.ReplaceAll(name, ".", "/"))
		write := func() error { return writeSysctl(file, sysctls[name]) }
		if err := s.namespaces.Do(nsPath, write); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w", name, sysctls[name], classifySysctlErr(err))
		}
	}
	return nil
}

// writeSysctl writes an existing sysctl file; /proc/sys never creates one.
func writeSysctl(file, value string) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// classifySysctlErr marks the kernel's answers to a bad request as the caller's mistake: no
// such sysctl (ENOENT), a sysctl directory (EISDIR), a read-only sysctl (EACCES) or a value
// the sysctl does not take (EINVAL, ERANGE).
func classifySysctlErr(err error) error {
	for _, errno := range []syscall.Errno{syscall.ENOENT, syscall.EISDIR, syscall.EACCES, syscall.EINVAL, syscall.ERANGE} {
		if errors.Is(err, errno) {
			return fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	return err
}
