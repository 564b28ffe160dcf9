package config

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestValidateRuntimeHandlers(t *testing.T) {
	tests := []struct {
		name     string
		handlers []RuntimeHandler
		def      string
		wantErr  string
	}{
		{name: "none"},
		{name: "builtin with overrides", handlers: []RuntimeHandler{{Name: "strict", UserNamespaces: "required", SeccompProfile: "/etc/berth/seccomp.json"}}},
		{name: "external runtime", handlers: []RuntimeHandler{{Name: "crun", Runtime: "/usr/bin/crun"}}},
		{name: "runc replaced", handlers: []RuntimeHandler{{Name: "runc", SeccompProfile: "unconfined"}}},
		{name: "default handler configured", handlers: []RuntimeHandler{{Name: "strict"}}, def: "strict"},
		{name: "default handler built in", def: "runc"},
		{name: "empty name", handlers: []RuntimeHandler{{Name: ""}}, wantErr: `runtime.handlers[0]: name ""`},
		{name: "upper-case name", handlers: []RuntimeHandler{{Name: "Crun"}}, wantErr: `name "Crun" must be a DNS label`},
		{name: "duplicate", handlers: []RuntimeHandler{{Name: "a"}, {Name: "a"}}, wantErr: `runtime.handlers[1]: handler "a" is configured twice`},
		{name: "relative runtime", handlers: []RuntimeHandler{{Name: "crun", Runtime: "crun"}}, wantErr: `handler "crun": runtime "crun" must be`},
		{name: "bad user namespaces", handlers: []RuntimeHandler{{Name: "x", UserNamespaces: "yes"}}, wantErr: `handler "x": user_namespaces "yes"`},
		{name: "relative seccomp profile", handlers: []RuntimeHandler{{Name: "x", SeccompProfile: "p.json"}}, wantErr: `handler "x": seccomp_profile "p.json"`},
		{name: "unknown default handler", def: "kata", wantErr: `runtime.default_handler "kata"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			c.Runtime = RuntimeConfig{DefaultHandler: tt.def, Handlers: tt.handlers}
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRuntimeHandlerLookup(t *testing.T) {
	r := RuntimeConfig{Handlers: []RuntimeHandler{
		{Name: "runc", SeccompProfile: "unconfined"},
		{Name: "crun", Runtime: "/usr/bin/crun"},
	}}
	if got := r.HandlerNames(); !slices.Equal(got, []string{"", "runc", "crun"}) {
		t.Errorf("HandlerNames = %q, want the built-ins then crun, runc once", got)
	}
	tests := []struct {
		name, lookup string
		def          string
		want         RuntimeHandler
		ok           bool
	}{
		{name: "default is built in", lookup: "", want: RuntimeHandler{Name: "", Runtime: RuntimeBuiltin, UserNamespaces: UserNSAllowed}, ok: true},
		{name: "runc configured", lookup: "runc", want: r.Handlers[0], ok: true},
		{name: "external", lookup: "crun", want: r.Handlers[1], ok: true},
		{name: "default redirected", lookup: "", def: "crun", want: r.Handlers[1], ok: true},
		{name: "unknown", lookup: "kata"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := r
			r.DefaultHandler = tt.def
			got, ok := r.Handler(tt.lookup)
			if ok != tt.ok || got != tt.want {
				t.Errorf("Handler(%q) = %+v, %v; want %+v, %v", tt.lookup, got, ok, tt.want, tt.ok)
			}
		})
	}
	if (RuntimeHandler{}).UserNSMode() != UserNSAllowed || !(RuntimeHandler{}).IsBuiltin() {
		t.Error("an empty handler table is not the builtin runtime with user namespaces allowed")
	}
}

func TestLoadRuntimeHandlers(t *testing.T) {
	path := filepath.Join(t.TempDir(), "config.toml")
	file := `[runtime]
default_handler = "strict"

[[runtime.handlers]]
name = "strict"
user_namespaces = "required"
seccomp_profile = "/etc/berth/strict.json"

[[runtime.handlers]]
name = "crun"
runtime = "/usr/bin/crun"
`
	if err := os.WriteFile(path, []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	c, err := Load(path, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	want := []RuntimeHandler{
		{Name: "strict", UserNamespaces: "required", SeccompProfile: "/etc/berth/strict.json"},
		{Name: "crun", Runtime: "/usr/bin/crun"},
	}
	if c.Runtime.DefaultHandler != "strict" || !slices.Equal(c.Runtime.Handlers, want) {
		t.Errorf("runtime = %+v, want %+v", c.Runtime, want)
	}
}
