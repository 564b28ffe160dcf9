package runtime

import (
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

// TestJoinScopeRefusesCgroupfsPaths: under the systemd driver a pod init's cgroup must be in
// runc's "<slice>:<prefix>:<name>" form; anything else is refused before systemd is asked.
func TestJoinScopeRefusesCgroupfsPaths(t *testing.T) {
	for _, p := range []string{"/berth/s1/pod-init", "a:b", "x.slice:berth"} {
		if err := joinScope(p, 1); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("joinScope(%q) = %v, want InvalidArgument", p, err)
		}
	}
}
