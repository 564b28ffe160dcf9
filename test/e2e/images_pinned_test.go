package e2e

import (
	"fmt"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestImagePinned: images named in [images] pinned are reported pinned (the kubelet's image
// GC skips them), in ListImages and ImageStatus; the others are not.
func TestImagePinned(t *testing.T) {
	a := newAgent(t, agentOptions{config: fmt.Sprintf("[images]\npinned = [%q]\n", env.images.busybox)})
	pinnedID := pull(t, a, env.images.busybox)
	otherID := pull(t, a, env.images.nonroot)
	if img := imageStatus(t, a, env.images.busybox); !img.GetPinned() {
		t.Errorf("ImageStatus(%s).pinned = false, want true", env.images.busybox)
	}
	if img := imageStatus(t, a, env.images.nonroot); img.GetPinned() {
		t.Errorf("ImageStatus(%s).pinned = true, want false", env.images.nonroot)
	}
	resp, err := a.img.ListImages(ctxT(t), &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, img := range resp.Images {
		got[img.Id] = img.Pinned
	}
	if !got[pinnedID] || got[otherID] {
		t.Errorf("ListImages pinned = %v, want %s only", got, pinnedID)
	}
}
