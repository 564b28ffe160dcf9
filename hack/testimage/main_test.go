package main

import (
	"testing"

	"github.com/berth-runtime/berth/test/fixture"
)

func TestStandardSetAndAliases(t *testing.T) {
	set, err := standardSet(new(fixture.Builder), false)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"berth/busybox:latest", "berth/busybox:nonroot", "berth/multiarch:latest"} {
		if _, ok := set[n]; !ok {
			t.Errorf("standard set lacks %s", n)
		}
	}
	if _, ok := set["berth/big:latest"]; ok {
		t.Errorf("big image served without --big")
	}
	cf, err := set["berth/busybox:nonroot"].image.ConfigFile()
	if err != nil || cf.Config.User != "1000" {
		t.Errorf("nonroot user = %q (%v), want 1000", cf.Config.User, err)
	}

	tests := []struct {
		name  string
		alias string
		ok    bool
	}{
		{name: "image", alias: "library/busybox:latest=berth/busybox:latest", ok: true},
		{name: "index", alias: "library/multi:1=berth/multiarch:latest", ok: true},
		{name: "unknown target", alias: "a:1=berth/nope:latest"},
		{name: "no equals", alias: "library/busybox:latest"},
		{name: "empty new name", alias: "=berth/busybox:latest"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := addAliases(set, []string{tc.alias})
			if (err == nil) != tc.ok {
				t.Fatalf("addAliases(%q) = %v, want ok=%v", tc.alias, err, tc.ok)
			}
		})
	}
	if set["library/busybox:latest"].image != set["berth/busybox:latest"].image {
		t.Errorf("alias does not point at the same image")
	}

	reg := fixture.StartRegistryT(t)
	pushed, err := pushAll(reg, set)
	if err != nil {
		t.Fatal(err)
	}
	if len(pushed) != len(set) {
		t.Errorf("pushed %d refs, want %d", len(pushed), len(set))
	}
	if pushed[reg.Ref("library/busybox:latest")] != pushed[reg.Ref("berth/busybox:latest")] {
		t.Errorf("alias pushed with a different digest: %v", pushed)
	}
}
