package runtime

import (
	"errors"
	"fmt"
	"os"

	"github.com/containerd/errdefs"
	cg "github.com/opencontainers/cgroups"
	"github.com/opencontainers/cgroups/manager"
	"github.com/opencontainers/runc/libcontainer/specconv"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/cgroups"
)

// joinScope puts pid into a new systemd scope named by runc's "<slice>:<prefix>:<name>"
// form (the systemd cgroup driver), asking systemd over D-Bus: it creates the scope with pid
// in it, in the slice, with accounting on and no limits of its own.
func joinScope(runcPath string, pid int) error {
	c, err := specconv.CreateCgroupConfig(&specconv.CreateOpts{
		CgroupName:       "pod-init",
		UseSystemdCgroup: true,
		Spec:             &specs.Spec{Linux: &specs.Linux{CgroupsPath: runcPath}},
	}, nil)
	if err != nil {
		return fmt.Errorf("scope %q: %w", runcPath, errors.Join(err, errdefs.ErrInvalidArgument))
	}
	return applyScope(c, pid)
}

// JoinShimScope moves the calling shim into berth-shim-<sandbox id>.scope in
// berth-shims.slice, so that it
// lives outside the agent's service: systemd then neither stops nor kills it with the
// agent's unit (KillMode=process spares it on a stop, but `systemctl kill` and an OOM kill
// of the unit reach every process in the unit's cgroup).
func JoinShimScope(sandboxID string) error {
	c := &cg.Cgroup{Systemd: true, Parent: cgroups.ShimSlice, ScopePrefix: cgroups.ShimScopePrefix, Name: sandboxID, Resources: &cg.Resources{}}
	return applyScope(c, os.Getpid())
}

func applyScope(c *cg.Cgroup, pid int) error {
	m, err := manager.New(c)
	if err != nil {
		return fmt.Errorf("scope %s-%s: %w", c.ScopePrefix, c.Name, err)
	}
	if err := m.Apply(pid); err != nil {
		return fmt.Errorf("scope %s-%s: move pid %d: %w", c.ScopePrefix, c.Name, pid, err)
	}
	return nil
}
