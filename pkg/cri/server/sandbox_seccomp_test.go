package server

import (
	"context"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func withPodSeccomp(p *runtimeapi.SecurityProfile) func(*runtimeapi.PodSandboxConfig) {
	return func(c *runtimeapi.PodSandboxConfig) {
		c.Linux.SecurityContext = &runtimeapi.LinuxSandboxSecurityContext{Seccomp: p}
	}
}

// TestPodInitSeccomp: the pod-level seccomp profile reaches the pod init's start request.
func TestPodInitSeccomp(t *testing.T) {
	tests := []struct {
		name       string
		profile    *runtimeapi.SecurityProfile
		wantFilter bool
	}{
		{"none is unconfined", nil, false},
		{"unconfined", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Unconfined}, false},
		{"runtime default", &runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_RuntimeDefault}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			id := e.runPod(t, podConfig("p", withPodSeccomp(tt.profile)))
			sb, err := e.svc.store.Sandboxes.Get(id)
			if err != nil {
				t.Fatal(err)
			}
			got := e.shims.get(sb.Metadata().ShimDir).podInitSeccomp
			if (got != nil) != tt.wantFilter {
				t.Fatalf("pod init seccomp filter = %v, want one: %v", got, tt.wantFilter)
			}
			if got != nil && got.DefaultAction != "SCMP_ACT_ERRNO" {
				t.Errorf("default action %q, want the default profile's SCMP_ACT_ERRNO", got.DefaultAction)
			}
		})
	}
}

// TestPodInitSeccompBadProfile: a Localhost profile that does not exist fails the pod as
// InvalidArgument naming the path, and leaves nothing behind.
func TestPodInitSeccompBadProfile(t *testing.T) {
	e := newTestEnv(t)
	_, err := e.svc.RunPodSandbox(context.Background(), &runtimeapi.RunPodSandboxRequest{Config: podConfig("p", withPodSeccomp(
		&runtimeapi.SecurityProfile{ProfileType: runtimeapi.SecurityProfile_Localhost, LocalhostRef: "/nonexistent/profile.json"}))})
	if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), "/nonexistent/profile.json") {
		t.Fatalf("err = %v, want InvalidArgument naming the profile", err)
	}
	e.assertNothingLeft(t)
}
