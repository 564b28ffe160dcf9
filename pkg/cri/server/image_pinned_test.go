package server

import (
	"context"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/images"
)

// pinnedStore holds one pinned and one unpinned image.
type pinnedStore struct{ ImageStore }

var pinnedImgs = []images.Image{
	{ID: "sha256:aa", RepoTags: []string{"r/pause:1"}, Pinned: true},
	{ID: "sha256:bb", RepoTags: []string{"r/app:1"}},
}

func (pinnedStore) List(context.Context) ([]images.Image, error) { return pinnedImgs, nil }

func (pinnedStore) Get(_ context.Context, ref string) (images.Image, error) {
	if ref == "r/pause:1" {
		return pinnedImgs[0], nil
	}
	return pinnedImgs[1], nil
}

// TestImagePinnedReported: the kubelet's image GC skips an image only if ListImages says it
// is pinned; ImageStatus says the same.
func TestImagePinnedReported(t *testing.T) {
	e := newTestEnv(t)
	e.svc.images = pinnedStore{}
	ctx := context.Background()
	list, err := e.svc.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	for _, img := range list.Images {
		got[img.Id] = img.Pinned
	}
	if !got["sha256:aa"] || got["sha256:bb"] || len(got) != 2 {
		t.Errorf("ListImages pinned = %v, want only sha256:aa", got)
	}
	st, err := e.svc.ImageStatus(ctx, &runtimeapi.ImageStatusRequest{Image: &runtimeapi.ImageSpec{Image: "r/pause:1"}})
	if err != nil || !st.GetImage().GetPinned() {
		t.Errorf("ImageStatus(r/pause:1) pinned = %v, %v; want true", st.GetImage().GetPinned(), err)
	}
}
