package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fakeRlimits answers getrlimit with a hard limit of 1024 for every resource but NOFILE (4096).
func fakeRlimits(resource int, rl *unix.Rlimit) error {
	rl.Cur, rl.Max = 1024, 1024
	if resource == unix.RLIMIT_NOFILE {
		rl.Max = 4096
	}
	return nil
}

func TestProbeNodeLimits(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	oom := func(v int, err error) func() (int, error) { return func() (int, error) { return v, err } }
	tests := []struct {
		name      string
		src       limitsSource
		wantSys   bool
		wantFloor int
		wantHard  uint64 // RLIMIT_NOFILE, when !wantSys
	}{
		{name: "CAP_SYS_RESOURCE held", src: limitsSource{caps: []string{"CAP_CHOWN", "CAP_SYS_RESOURCE"}, oomAdj: oom(0, nil), getrlimit: fakeRlimits}, wantSys: true},
		{name: "no CAP_SYS_RESOURCE", src: limitsSource{caps: []string{"CAP_CHOWN"}, oomAdj: oom(-500, nil), getrlimit: fakeRlimits}, wantFloor: -500, wantHard: 4096},
		{name: "oom_score_adj unreadable", src: limitsSource{oomAdj: oom(0, errors.New("no proc")), getrlimit: fakeRlimits}, wantFloor: 1000, wantHard: 4096},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := probeNodeLimits(tt.src, log)
			if n.sysResource != tt.wantSys {
				t.Fatalf("sysResource = %v, want %v", n.sysResource, tt.wantSys)
			}
			if tt.wantSys {
				return
			}
			if n.oomFloor != tt.wantFloor || n.hard["RLIMIT_NOFILE"] != tt.wantHard || n.hard["RLIMIT_CORE"] != 1024 {
				t.Errorf("limits = %+v, want floor %d and NOFILE hard %d", n, tt.wantFloor, tt.wantHard)
			}
		})
	}
}

func TestNodeLimitsAdjust(t *testing.T) {
	ptr := func(v int) *int { return &v }
	clamped := nodeLimits{oomFloor: 0, hard: map[string]uint64{"RLIMIT_NOFILE": 4096}}
	tests := []struct {
		name      string
		limits    nodeLimits
		oom       *int
		rlimits   []specs.POSIXRlimit
		wantOOM   *int
		wantRl    []specs.POSIXRlimit
		wantNotes int
	}{
		{name: "privileged node applies all", limits: nodeLimits{sysResource: true}, oom: ptr(-997),
			rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}},
			wantOOM: ptr(-997), wantRl: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}}},
		{name: "negative oom_score_adj raised to the floor", limits: clamped, oom: ptr(-997), wantOOM: ptr(0), wantNotes: 1},
		{name: "oom_score_adj above the floor kept", limits: clamped, oom: ptr(1000), wantOOM: ptr(1000)},
		{name: "no oom_score_adj", limits: clamped},
		{name: "hard rlimit above the agent's lowered", limits: clamped,
			rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 1 << 20, Soft: 1 << 20}, {Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 512}},
			wantRl:  []specs.POSIXRlimit{{Type: "RLIMIT_NOFILE", Hard: 4096, Soft: 4096}, {Type: "RLIMIT_NOFILE", Hard: 1024, Soft: 512}}, wantNotes: 1},
		{name: "unknown rlimit passed on", limits: clamped,
			rlimits: []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Hard: 1 << 30}}, wantRl: []specs.POSIXRlimit{{Type: "RLIMIT_CORE", Hard: 1 << 30}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sp := &specs.Spec{Process: &specs.Process{OOMScoreAdj: tt.oom, Rlimits: tt.rlimits}}
			notes := tt.limits.adjust(sp)
			if len(notes) != tt.wantNotes {
				t.Errorf("notes = %q, want %d", notes, tt.wantNotes)
			}
			if got := sp.Process.OOMScoreAdj; (got == nil) != (tt.wantOOM == nil) || (got != nil && *got != *tt.wantOOM) {
				t.Errorf("oom_score_adj = %v, want %v", deref(got), deref(tt.wantOOM))
			}
			if len(sp.Process.Rlimits) != len(tt.wantRl) {
				t.Fatalf("rlimits = %+v, want %+v", sp.Process.Rlimits, tt.wantRl)
			}
			for i := range tt.wantRl {
				if sp.Process.Rlimits[i] != tt.wantRl[i] {
					t.Errorf("rlimit %d = %+v, want %+v", i, sp.Process.Rlimits[i], tt.wantRl[i])
				}
			}
		})
	}
}

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

// A container whose oom_score_adj the node cannot give gets the floor in its spec, and its
// ContainerStatus says so; Status reports the node's decision.
func TestNotHonouredReported(t *testing.T) {
	e := newTestEnv(t)
	e.svc.limits = nodeLimits{oomFloor: 0, hard: map[string]uint64{}}
	ctx := context.Background()
	pod := podConfig("limits")
	podID := e.runPod(t, pod)

	cfg := containerConfig("guaranteed")
	cfg.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{OomScoreAdj: -997}}
	id := e.createContainer(t, podID, pod, cfg)
	md, err := e.svc.store.Containers.Get(id)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(md.Metadata().Bundle, "config.json"))
	if err != nil {
		t.Fatal(err)
	}
	var sp specs.Spec
	if err := json.Unmarshal(b, &sp); err != nil {
		t.Fatal(err)
	}
	if sp.Process.OOMScoreAdj == nil || *sp.Process.OOMScoreAdj != 0 {
		t.Errorf("spec oom_score_adj = %v, want the floor 0", deref(sp.Process.OOMScoreAdj))
	}
	st, err := e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Status.Annotations[notHonouredAnnotation]; !strings.Contains(got, "oom_score_adj -997 raised to 0") {
		t.Errorf("annotation %s = %q, want the raised oom_score_adj", notHonouredAnnotation, got)
	}

	// A container asking for what the node gives carries no such annotation.
	plain := e.createContainer(t, podID, pod, containerConfig("burstable"))
	st, err = e.svc.ContainerStatus(ctx, &runtimeapi.ContainerStatusRequest{ContainerId: plain})
	if err != nil {
		t.Fatal(err)
	}
	if got, ok := st.Status.Annotations[notHonouredAnnotation]; ok {
		t.Errorf("annotation %s = %q on a container with nothing clamped", notHonouredAnnotation, got)
	}

	conds := statusConditions(t, e)
	if c := conds[sysResourceConditionType]; c == nil || c.Status || c.Reason != "NoCapSysResource" {
		t.Errorf("condition %s = %v, want false with reason NoCapSysResource", sysResourceConditionType, c)
	}
	e.svc.limits = nodeLimits{sysResource: true}
	if c := statusConditions(t, e)[sysResourceConditionType]; c == nil || !c.Status {
		t.Errorf("condition %s = %v with CAP_SYS_RESOURCE, want true", sysResourceConditionType, c)
	}
}

func statusConditions(t *testing.T, e *testEnv) map[string]*runtimeapi.RuntimeCondition {
	t.Helper()
	resp, err := e.svc.Status(context.Background(), &runtimeapi.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*runtimeapi.RuntimeCondition{}
	for _, c := range resp.Status.Conditions {
		out[c.Type] = c
	}
	return out
}

func TestHugepageNoteAndAnnotations(t *testing.T) {
	limits := &runtimeapi.LinuxContainerResources{HugepageLimits: []*runtimeapi.HugepageLimit{{PageSize: "2MB", Limit: 0}}}
	if n := hugepageNote(limits, true); n != "" {
		t.Errorf("with hugetlb: note %q", n)
	}
	if n := hugepageNote(&runtimeapi.LinuxContainerResources{}, false); n != "" {
		t.Errorf("no hugepage limits asked: note %q", n)
	}
	if n := hugepageNote(limits, false); n == "" {
		t.Error("hugepage limits dropped without a note")
	}
	cfg := map[string]string{"a": "b"}
	out := statusAnnotations(cfg, []string{"x", "y"})
	if out[notHonouredAnnotation] != "x; y" || out["a"] != "b" {
		t.Errorf("annotations = %v", out)
	}
	if _, ok := cfg[notHonouredAnnotation]; ok {
		t.Error("statusAnnotations changed the container's config")
	}
}
