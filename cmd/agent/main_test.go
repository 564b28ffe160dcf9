package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunConfigCommand(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(file, []byte("root = \"/from/file\"\nlog_level = \"debug\"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		args    []string
		want    []string // lines the printed config must hold
		wantErr string
	}{
		{name: "an explicit config file must exist", args: []string{"--config", filepath.Join(dir, "absent.toml"), "config"}, wantErr: "read config"},
		{name: "file values", args: []string{"--config", file, "config"}, want: []string{`root = "/from/file"`, `log_level = "debug"`}},
		{name: "flags override the file", args: []string{"--config", file, "--root", "/from/flag", "--state", "/s", "config"},
			want: []string{`root = "/from/flag"`, `state = "/s"`, `log_level = "debug"`}},
		{name: "invalid flag value", args: []string{"--config", file, "--log-level", "loud", "config"}, wantErr: "log_level"},
		{name: "unknown command", args: []string{"--config", file, "frobnicate"}, wantErr: `unknown command "frobnicate"`},
		{name: "version", args: []string{"--version"}, want: []string{"berth " + version}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(tt.args, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
}
