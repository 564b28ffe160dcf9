package server

import (
	"fmt"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// nodeLimits is how far this node lets a container go past the agent's own process limits,
// decided once at startup (probeNodeLimits). The shim, and runc's init below it, inherit the
// agent's credentials, oom_score_adj and rlimits, so the agent's view is theirs: the agent
// adjusts each spec before it writes it (adjust), and the shim applies the spec as written.
//
// Without CAP_SYS_RESOURCE the kernel refuses an oom_score_adj below the process's minimum
// (the agent's own is the floor it can see) and a hard rlimit above the current one. The
// kubelet asks for both (a negative oom_score_adj for Guaranteed pods and the node-critical
// ones; NRI plugins set rlimits): what the node cannot give is clamped, logged at startup,
// reported in Status (condition SysResource) and on the container (annotation
// notHonouredAnnotation in ContainerStatus).
type nodeLimits struct {
	// sysResource is CAP_SYS_RESOURCE in the agent's effective set: nothing is clamped.
	sysResource bool
	// oomFloor is the lowest oom_score_adj a container can get without CAP_SYS_RESOURCE.
	oomFloor int
	// hard maps an OCI rlimit type (RLIMIT_NOFILE) to the agent's hard limit: the highest a
	// container can get without CAP_SYS_RESOURCE. A type missing here is passed on.
	hard map[string]uint64
}

// limitsSource is what probeNodeLimits reads; tests give fakes.
type limitsSource struct {
	caps      []string // the agent's effective capabilities
	oomAdj    func() (int, error)
	getrlimit func(resource int, rl *unix.Rlimit) error
}

// hostLimitsSource reads the agent's own process.
func hostLimitsSource(caps []string) limitsSource {
	return limitsSource{caps: caps, oomAdj: ownOOMScoreAdj, getrlimit: unix.Getrlimit}
}

// rlimitResources are the rlimits the OCI spec names, by their resource number.
var rlimitResources = map[string]int{
	"RLIMIT_AS": unix.RLIMIT_AS, "RLIMIT_CORE": unix.RLIMIT_CORE, "RLIMIT_CPU": unix.RLIMIT_CPU,
	"RLIMIT_DATA": unix.RLIMIT_DATA, "RLIMIT_FSIZE": unix.RLIMIT_FSIZE, "RLIMIT_LOCKS": unix.RLIMIT_LOCKS,
	"RLIMIT_MEMLOCK": unix.RLIMIT_MEMLOCK, "RLIMIT_MSGQUEUE": unix.RLIMIT_MSGQUEUE, "RLIMIT_NICE": unix.RLIMIT_NICE,
	"RLIMIT_NOFILE": unix.RLIMIT_NOFILE, "RLIMIT_NPROC": unix.RLIMIT_NPROC, "RLIMIT_RSS": unix.RLIMIT_RSS,
	"RLIMIT_RTPRIO": unix.RLIMIT_RTPRIO, "RLIMIT_RTTIME": unix.RLIMIT_RTTIME, "RLIMIT_SIGPENDING": unix.RLIMIT_SIGPENDING,
	"RLIMIT_STACK": unix.RLIMIT_STACK,
}

// probeNodeLimits decides what the node allows and logs it once.
func probeNodeLimits(src limitsSource, log *slog.Logger) nodeLimits {
	n := nodeLimits{sysResource: slices.Contains(src.caps, "CAP_SYS_RESOURCE")}
	if n.sysResource {
		log.Info("node limits: CAP_SYS_RESOURCE held; negative oom_score_adj and raised hard rlimits are applied as asked")
		return n
	}
	floor, err := src.oomAdj()
	if err != nil {
		// Unknown floor: assume the highest, so that nothing the kernel refuses reaches runc.
		log.Warn("node limits: cannot read the agent's oom_score_adj; containers get at least 1000", "err", err)
		floor = 1000
	}
	n.oomFloor = floor
	n.hard = map[string]uint64{}
	for name, res := range rlimitResources {
		var rl unix.Rlimit
		if err := src.getrlimit(res, &rl); err != nil {
			log.Warn("node limits: cannot read the agent's rlimit; passing it on unclamped", "rlimit", name, "err", err)
			continue
		}
		n.hard[name] = rl.Max
	}
	log.Warn("node limits: no CAP_SYS_RESOURCE; containers get oom_score_adj of at least the agent's and hard rlimits of at most the agent's",
		"oom_score_adj_floor", n.oomFloor, "nofile_hard", n.hard["RLIMIT_NOFILE"])
	return n
}

// adjust clamps what the node cannot give in sp and returns one note for each change.
func (n nodeLimits) adjust(sp *specs.Spec) []string {
	if n.sysResource || sp.Process == nil {
		return nil
	}
	var notes []string
	if p := sp.Process.OOMScoreAdj; p != nil && *p < n.oomFloor {
		notes = append(notes, fmt.Sprintf("oom_score_adj %d raised to %d (no CAP_SYS_RESOURCE)", *p, n.oomFloor))
		v := n.oomFloor
		sp.Process.OOMScoreAdj = &v
	}
	for i, rl := range sp.Process.Rlimits {
		max, ok := n.hard[rl.Type]
		if !ok || rl.Hard <= max {
			continue
		}
		notes = append(notes, fmt.Sprintf("%s hard limit %d lowered to %d (no CAP_SYS_RESOURCE)", rl.Type, rl.Hard, max))
		sp.Process.Rlimits[i].Hard = max
		sp.Process.Rlimits[i].Soft = min(rl.Soft, max)
	}
	return notes
}

// ownOOMScoreAdj reads the agent's oom_score_adj.
func ownOOMScoreAdj() (int, error) {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0, err
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("parse /proc/self/oom_score_adj: %w", err)
	}
	return v, nil
}

// notHonouredAnnotation is the ContainerStatus annotation listing what the node could not give
// the container (crictl inspect shows it); absent when everything was applied as asked.
const notHonouredAnnotation = "io.berth.not-honoured"

// statusAnnotations are the container's annotations plus what was not honoured.
func statusAnnotations(cfg map[string]string, notHonoured []string) map[string]string {
	if len(notHonoured) == 0 {
		return cfg
	}
	out := maps.Clone(cfg)
	if out == nil {
		out = map[string]string{}
	}
	out[notHonouredAnnotation] = strings.Join(notHonoured, "; ")
	return out
}

// hugepageNote says that the request's hugepage limits were dropped on a node without the
// hugetlb controller; "" when there is nothing to say.
func hugepageNote(r *runtimeapi.LinuxContainerResources, hugetlb bool) string {
	if hugetlb || len(r.GetHugepageLimits()) == 0 {
		return ""
	}
	return "hugepage limits not applied (no hugetlb controller)"
}

// Condition types reported in Status for the node decisions; the kubelet ignores conditions it
// does not know, crictl info shows them.
const (
	sysResourceConditionType    = "SysResource"
	hugePagesConditionType      = "HugePageLimits"
	userNamespacesConditionType = "UserNamespaces"
	selinuxConditionType        = "SELinuxLabels"
)

// nodeConditions reports each startup decision: Status true where the node honours requests of
// that kind, false with the reason otherwise.
func (s *Service) nodeConditions() []*runtimeapi.RuntimeCondition {
	cond := func(typ string, ok bool, reason, msg string) *runtimeapi.RuntimeCondition {
		c := &runtimeapi.RuntimeCondition{Type: typ, Status: ok}
		if !ok {
			c.Reason, c.Message = reason, msg
		}
		return c
	}
	return []*runtimeapi.RuntimeCondition{
		cond(sysResourceConditionType, s.limits.sysResource, "NoCapSysResource",
			fmt.Sprintf("the agent lacks CAP_SYS_RESOURCE: oom_score_adj below %d is raised to it and hard rlimits above the agent's are lowered (see the container's %s annotation)",
				s.limits.oomFloor, notHonouredAnnotation)),
		cond(hugePagesConditionType, s.cgroups.Hugetlb(), "NoHugetlbController",
			"the hugetlb cgroup controller is not available: hugepage limits are not applied"),
		cond(userNamespacesConditionType, s.features.UserNamespaces, "NoIdmappedMounts",
			"pods with a user namespace are refused: "+s.userns.reason),
		// berth applies no SELinux labels: where SELinux is off they mean nothing, where it is
		// on a request carrying them is refused (spec.SELinux).
		cond(selinuxConditionType, !s.hostSec.selinux, "SELinuxLabelsUnsupported",
			"SELinux is enabled on this node and berth applies no labels: containers with SELinux options are refused"),
	}
}
