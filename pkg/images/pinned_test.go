package images

import (
	"context"
	"errors"
	"testing"

	"github.com/containerd/errdefs"
)

func TestPinned(t *testing.T) {
	reg := testRegistry(t, nil)
	a := testImage(t, "pa", map[string]string{"a": "a"})
	b := testImage(t, "pb", map[string]string{"b": "b"})
	c := testImage(t, "pc", map[string]string{"c": "c"})
	push(t, reg+"/app:v1", a)
	push(t, reg+"/other:v1", b)
	push(t, reg+"/third:v1", c)
	ctx := context.Background()
	// One pinned by tag, one by repo digest; the third is not.
	s := newService(t, func(o *Options) {
		o.Pinned = []string{reg + "/app:v1", reg + "/other@" + digestOfImage(t, b)}
	})
	for _, ref := range []string{reg + "/app:v1", reg + "/other:v1", reg + "/third:v1"} {
		if _, err := s.Pull(ctx, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{idOf(t, a): true, idOf(t, b): true, idOf(t, c): false}
	all, err := s.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, img := range all {
		if img.Pinned != want[img.ID] {
			t.Errorf("List: image %s %v pinned = %v, want %v", img.ID, img.RepoTags, img.Pinned, want[img.ID])
		}
	}
	if img, err := s.Get(ctx, idOf(t, a)); err != nil || !img.Pinned {
		t.Errorf("Get by id of a tag-pinned image: pinned %v, %v", img.Pinned, err)
	}
	// As in containerd, an explicit removal still removes a pinned image; only the kubelet's
	// GC, which reads Pinned, leaves it.
	if err := s.Remove(ctx, reg+"/app:v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, reg+"/app:v1"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("pinned image after Remove: %v", err)
	}
}

func TestPinnedRefsCheckedAtStart(t *testing.T) {
	for _, bad := range []string{"has space:x", "app:v1@sha256:short", ""} {
		_, err := New(Options{Root: t.TempDir(), Pinned: []string{bad}})
		if !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("New with pinned %q = %v, want an invalid-argument error", bad, err)
		}
	}
	set, err := newPinSet([]string{"busybox", "sha256:0123456789012345678901234567890123456789012345678901234567890123"})
	if err != nil {
		t.Fatal(err)
	}
	if !set["docker.io/library/busybox:latest"] || !set["sha256:0123456789012345678901234567890123456789012345678901234567890123"] {
		t.Errorf("pin set %v: want canonical names and ids", set)
	}
}
