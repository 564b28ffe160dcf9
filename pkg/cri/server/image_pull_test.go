package server

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/images"
	"github.com/berth-runtime/berth/pkg/images/remote"
)

// failingPuller fails every pull with err.
type failingPuller struct {
	ImageStore
	err error
}

func (f failingPuller) Pull(context.Context, string, *images.Auth) (images.Image, error) {
	return images.Image{}, f.err
}

// TestPullImageErrorHidesCredentials: what the kubelet receives for a failed pull (code,
// message and anything else on the wire) holds no credential, whether it came in the image
// reference or in a registry URL, and keeps its class.
func TestPullImageErrorHidesCredentials(t *testing.T) {
	const secret = "s3cr3tT0ken"
	// What pkg/images returns for a redirect to dead pre-signed storage: redacted text over
	// the raw cause, which errgrpc would otherwise send along as a status detail.
	registryErr := remote.Redact(fmt.Errorf("pull h/app:v1: registry http://h: %w: %w", errdefs.ErrUnavailable,
		errors.New(`Get "http://storage/blob?X-Amz-Signature=`+secret+`": dial tcp: connection refused`)))
	tests := []struct {
		name  string
		image string
		err   error
		want  codes.Code
	}{
		{"registry url with a signature", "h/app:v1", registryErr, codes.Unavailable},
		{"image written as a url with a password", "https://alice:" + secret + "@h/app:v1", fmt.Errorf("parse: %w", errdefs.ErrInvalidArgument), codes.InvalidArgument},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEnv(t)
			e.svc.images = failingPuller{err: tt.err}
			_, err := unaryCall(t, discardLog(), func(ctx context.Context, req any) (any, error) {
				return e.svc.PullImage(ctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: tt.image}})
			})
			st, _ := status.FromError(err)
			if st.Code() != tt.want {
				t.Errorf("code = %s, want %s (%v)", st.Code(), tt.want, err)
			}
			wire, merr := proto.Marshal(st.Proto())
			if merr != nil {
				t.Fatal(merr)
			}
			if strings.Contains(string(wire), secret) {
				t.Errorf("the status sent to the kubelet holds the secret: %v", st.Proto())
			}
			if !strings.Contains(st.Message(), "REDACTED") {
				t.Errorf("message does not show the redaction: %s", st.Message())
			}
		})
	}
}
