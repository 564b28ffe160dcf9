package images

import (
	"context"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
)

// Manifest annotations (a checkpoint image's mark) come back with the image, after a pull
// and from a new service over the same store.
func TestManifestAnnotations(t *testing.T) {
	reg := testRegistry(t, nil)
	marked := mutate.Annotations(testImage(t, "ckpt", map[string]string{"config.dump": "{}"}),
		map[string]string{"io.kubernetes.cri-o.annotations.checkpoint.name": "counter"}).(v1.Image)
	push(t, reg+"/ckpt/counter:1", marked)
	push(t, reg+"/plain:1", testImage(t, "plain", map[string]string{"a": "b"}))
	dir := t.TempDir()
	s := newService(t, func(o *Options) { o.Root = dir })
	ctx := context.Background()
	for _, ref := range []string{reg + "/ckpt/counter:1", reg + "/plain:1"} {
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	check := func(s *Service) {
		t.Helper()
		img, err := s.Get(ctx, reg+"/ckpt/counter:1")
		if err != nil || img.Annotations["io.kubernetes.cri-o.annotations.checkpoint.name"] != "counter" {
			t.Errorf("annotations = %v, %v", img.Annotations, err)
		}
		if img, err := s.Get(ctx, reg+"/plain:1"); err != nil || len(img.Annotations) != 0 {
			t.Errorf("plain image annotations = %v, %v", img.Annotations, err)
		}
	}
	check(s)
	s.Close()
	check(newService(t, func(o *Options) { o.Root = dir }))
}
