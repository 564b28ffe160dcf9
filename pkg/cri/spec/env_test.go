package spec

import (
	"slices"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func kv(k, v string) *runtimeapi.KeyValue { return &runtimeapi.KeyValue{Key: k, Value: []byte(v)} }

func TestEnv(t *testing.T) {
	tests := []struct {
		name     string
		image    []string
		envs     []*runtimeapi.KeyValue
		hostname string
		want     []string
		err      error
	}{
		{
			name: "defaults",
			want: []string{"PATH=" + DefaultPath},
		},
		{
			name:     "hostname first, path appended",
			hostname: "pod-a",
			image:    []string{"A=1"},
			want:     []string{"HOSTNAME=pod-a", "A=1", "PATH=" + DefaultPath},
		},
		{
			name:  "image path kept",
			image: []string{"PATH=/bin", "B=2"},
			want:  []string{"PATH=/bin", "B=2"},
		},
		{
			name:  "cri overrides image in place",
			image: []string{"A=1", "B=2", "PATH=/bin"},
			envs:  []*runtimeapi.KeyValue{kv("A", "x"), kv("C", "3")},
			want:  []string{"A=x", "B=2", "PATH=/bin", "C=3"},
		},
		{
			name:     "cri overrides hostname",
			hostname: "pod-a",
			envs:     []*runtimeapi.KeyValue{kv("HOSTNAME", "mine"), kv("PATH", "/x")},
			want:     []string{"HOSTNAME=mine", "PATH=/x"},
		},
		{
			name: "values with = and empty values",
			envs: []*runtimeapi.KeyValue{kv("Q", "a=b"), kv("E", "")},
			want: []string{"Q=a=b", "E=", "PATH=" + DefaultPath},
		},
		{
			name:  "last duplicate wins",
			image: []string{"A=1", "A=2"},
			envs:  []*runtimeapi.KeyValue{kv("B", "1"), kv("B", "2")},
			want:  []string{"A=2", "B=2", "PATH=" + DefaultPath},
		},
		{name: "empty key", envs: []*runtimeapi.KeyValue{kv("", "x")}, err: errInvalid},
		{name: "key with =", envs: []*runtimeapi.KeyValue{kv("A=B", "x")}, err: errInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Env(&runtimeapi.ContainerConfig{Envs: tt.envs}, ImageConfig{Env: tt.image}, tt.hostname)
			wantErr(t, err, tt.err)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
		})
	}
}
