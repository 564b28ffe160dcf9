package remote

import (
	"errors"
	"fmt"
	"testing"

	"github.com/containerd/errdefs"
)

func TestRedactURLs(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"no url", "pull docker.io/library/busybox:latest: not found", "pull docker.io/library/busybox:latest: not found"},
		{"plain url", "GET https://registry:5000/v2/app/manifests/v1: NOT FOUND", "GET https://registry:5000/v2/app/manifests/v1: NOT FOUND"},
		{"userinfo", `registry https://alice:s3cret@mirror.local:5000: Get "https://alice:s3cret@mirror.local:5000/v2/": EOF`,
			`registry https://REDACTED@mirror.local:5000: Get "https://REDACTED@mirror.local:5000/v2/": EOF`},
		{"token user", "http://ghp_T0KEN@h/v2/", "http://REDACTED@h/v2/"},
		{"signed redirect", "GET https://bucket.s3.amazonaws.com/blob?X-Amz-Credential=AKIA%2Fx&X-Amz-Signature=abc123: ACCESS DENIED",
			"GET https://bucket.s3.amazonaws.com/blob?X-Amz-Credential=REDACTED&X-Amz-Signature=REDACTED: ACCESS DENIED"},
		{"bare token and fragment", "see https://h/p?tok3n#access_token=x end", "see https://h/p?REDACTED#REDACTED end"},
		{"two urls", "a http://u:p@h1/x?k=v, b HTTPS://h2/y?k=v.", "a http://REDACTED@h1/x?k=REDACTED, b HTTPS://h2/y?k=REDACTED."},
		{"at sign in the path stays", "https://h/v2/app/manifests/sha256:ab@x", "https://h/v2/app/manifests/sha256:ab@x"},
		{"empty query", "https://h/p?", "https://h/p?"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := RedactURLs(tt.in); got != tt.want {
				t.Errorf("RedactURLs(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestRedactKeepsClass(t *testing.T) {
	cause := errors.New(`Get "https://u:pw@h/v2/": x509: unknown authority`)
	err := Redact(fmt.Errorf("registry h: %w: %w", errdefs.ErrUnavailable, cause))
	if !errdefs.IsUnavailable(err) || !errors.Is(err, cause) {
		t.Errorf("class or cause lost: %v", err)
	}
	if want := `registry h: unavailable: Get "https://REDACTED@h/v2/": x509: unknown authority`; err.Error() != want {
		t.Errorf("got %q, want %q", err.Error(), want)
	}
	plain := errors.New("plain")
	if Redact(plain) != plain || Redact(nil) != nil {
		t.Error("an error without URLs must pass unchanged")
	}
}
