package images

import (
	"fmt"

	"github.com/berth-runtime/berth/pkg/images/reference"
)

// pinSet is the set of images the node keeps: image references and ids from the
// configuration, in canonical form. Pinned is reported to the kubelet, whose image garbage
// collection never picks a pinned image; an explicit RemoveImage still removes one, as in
// containerd, whose CRI RemoveImage does not look at its pinned label either.
type pinSet map[string]bool

// newPinSet canonicalises the configured names once, at startup: a malformed one is an
// error then, not an image silently left unpinned.
func newPinSet(names []string) (pinSet, error) {
	set := pinSet{}
	for _, n := range names {
		if id, ok := reference.ParseID(n); ok {
			set[id] = true
			continue
		}
		canon, err := reference.Normalize(n)
		if err != nil {
			return nil, fmt.Errorf("pinned image %q: %w", n, err)
		}
		set[canon] = true
	}
	return set, nil
}

// pins reports whether the image with this id and these names is pinned: its id or any of
// its names (tags and repo digests) is in the set. A pinned tag pins whichever image holds
// it now.
func (p pinSet) pins(id string, names []string) bool {
	if p[id] {
		return true
	}
	for _, n := range names {
		if p[n] {
			return true
		}
	}
	return false
}
