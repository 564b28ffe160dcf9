package server

import (
	"context"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/images"
)

// ImageStore is what the CRI layer needs of pkg/images.
type ImageStore interface {
	Pull(ctx context.Context, ref string, auth *images.Auth) (images.Image, error)
	Get(ctx context.Context, ref string) (images.Image, error)
	List(ctx context.Context) ([]images.Image, error)
	Remove(ctx context.Context, ref string) error
	FsUsage(ctx context.Context) (images.FsUsage, error)
}

// toCRIImage converts a stored image to its CRI form. The image's USER is
// reported as a uid when it starts with a number and as a username otherwise,
// which is how the kubelet checks runAsNonRoot.
func toCRIImage(img images.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
		Pinned:      img.Pinned,
	}
	user, _, _ := strings.Cut(img.Config.User, ":")
	if user == "" {
		return out
	}
	if uid, err := strconv.ParseInt(user, 10, 64); err == nil {
		out.Uid = &runtimeapi.Int64Value{Value: uid}
	} else {
		out.Username = user
	}
	return out
}

// imageRef returns the reference the request names, or "" when none is given.
func imageRef(spec *runtimeapi.ImageSpec) string {
	if spec == nil {
		return ""
	}
	return spec.GetImage()
}
