package nri

import (
	"net"
	"path/filepath"
	"testing"
)

func TestSocketLive(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live.sock")
	l, err := net.Listen("unix", live)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	tests := []struct {
		name string
		path string
		want bool
	}{
		{"served socket", live, true},
		{"missing socket", filepath.Join(dir, "none.sock"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := socketLive(tt.path); got != tt.want {
				t.Fatalf("socketLive(%s) = %v, want %v", tt.path, got, tt.want)
			}
		})
	}
}
