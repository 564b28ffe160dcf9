package spec

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func TestArgs(t *testing.T) {
	img := ImageConfig{Entrypoint: []string{"/entry", "-e"}, Cmd: []string{"cmd", "-c"}}
	tests := []struct {
		name          string
		command, args []string
		img           ImageConfig
		want          []string
		err           error
	}{
		{name: "image only", img: img, want: []string{"/entry", "-e", "cmd", "-c"}},
		{name: "command replaces entrypoint and cmd", command: []string{"/bin/sh"}, img: img, want: []string{"/bin/sh"}},
		{name: "command and args", command: []string{"/bin/sh"}, args: []string{"-c", "true"}, img: img, want: []string{"/bin/sh", "-c", "true"}},
		{name: "args replace cmd only", args: []string{"a1"}, img: img, want: []string{"/entry", "-e", "a1"}},
		{name: "args without entrypoint", args: []string{"/bin/true"}, img: ImageConfig{Cmd: []string{"x"}}, want: []string{"/bin/true"}},
		{name: "cmd without entrypoint", img: ImageConfig{Cmd: []string{"/bin/sh"}}, want: []string{"/bin/sh"}},
		{name: "entrypoint without cmd", img: ImageConfig{Entrypoint: []string{"/e"}}, want: []string{"/e"}},
		{name: "nothing", err: errInvalid},
		{name: "args empty with nothing else", img: ImageConfig{}, args: []string{}, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.img.Entrypoint)
			got, err := Args(&runtimeapi.ContainerConfig{Command: tt.command, Args: tt.args}, tt.img)
			wantErr(t, err, tt.err)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(tt.img.Entrypoint, before) {
				t.Fatalf("image entrypoint modified: %q", tt.img.Entrypoint)
			}
		})
	}
}
