package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/berth-runtime/berth/pkg/cri/spec"
)

// fakeParser stands for apparmor_parser over a fake securityfs: a successful Replace lists the
// profile in fs/profiles, as the kernel does.
type fakeParser struct {
	fs    string
	err   error
	calls int
	text  []byte
}

func (p *fakeParser) Replace(_ context.Context, text []byte) error {
	p.calls++
	p.text = text
	if p.err != nil {
		return p.err
	}
	f, err := os.OpenFile(filepath.Join(p.fs, "profiles"), os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.WriteString(f, spec.AppArmorDefaultProfile+" (enforce)\n")
	return err
}

func TestSetUpAppArmorDefault(t *testing.T) {
	_, version := spec.AppArmorDefaultText()
	tests := []struct {
		name      string
		loaded    bool   // the kernel already lists berth-default
		stamp     string // version recorded by the last load; "" = none
		noParser  bool
		parserErr error
		wantCalls int
		want      string // node.Default
		noDefault string // substring of node.NoDefault
	}{
		{name: "not loaded: loads it", wantCalls: 1, want: spec.AppArmorDefaultProfile},
		{name: "loaded at this version: left alone", loaded: true, stamp: version, want: spec.AppArmorDefaultProfile},
		{name: "loaded at another version: replaced", loaded: true, stamp: "0123456789abcdef", wantCalls: 1, want: spec.AppArmorDefaultProfile},
		{name: "loaded, version unknown: replaced", loaded: true, wantCalls: 1, want: spec.AppArmorDefaultProfile},
		{name: "no parser, not loaded: refused with the fix", noParser: true, noDefault: "install the apparmor package"},
		{name: "no parser, loaded by someone: kept", noParser: true, loaded: true, want: spec.AppArmorDefaultProfile},
		{name: "parser fails: refused with its error", parserErr: errors.New("syntax error"), wantCalls: 1, noDefault: "syntax error"},
		{name: "parser fails on a loaded old version: refused", loaded: true, parserErr: errors.New("syntax error"), wantCalls: 1, noDefault: "syntax error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs, state := t.TempDir(), t.TempDir()
			profiles := "docker-default (enforce)\n"
			if tt.loaded {
				profiles += spec.AppArmorDefaultProfile + " (enforce)\n"
			}
			writeTestFile(t, filepath.Join(fs, "profiles"), profiles)
			if tt.stamp != "" {
				writeTestFile(t, filepath.Join(state, appArmorVersionFile), tt.stamp+"\n")
			}
			fp := &fakeParser{fs: fs, err: tt.parserErr}
			var parser appArmorParser = fp
			if tt.noParser {
				parser = nil
			}
			node := spec.AppArmorNode{Enabled: true, FS: fs}
			if tt.loaded {
				node.Default = spec.AppArmorDefaultProfile
			}
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			got := setUpAppArmorDefault(context.Background(), node, parser, state, log)
			if fp.calls != tt.wantCalls {
				t.Errorf("parser ran %d times, want %d", fp.calls, tt.wantCalls)
			}
			if got.Default != tt.want || !got.Enabled || got.FS != fs {
				t.Errorf("node %+v, want default %q", got, tt.want)
			}
			if tt.noDefault != "" && !strings.Contains(got.NoDefault, tt.noDefault) {
				t.Errorf("NoDefault %q does not say %q", got.NoDefault, tt.noDefault)
			}
			if tt.want != "" && got.NoDefault != "" {
				t.Errorf("profile loaded but NoDefault %q", got.NoDefault)
			}
			if fp.calls > 0 && tt.parserErr == nil {
				b, err := os.ReadFile(filepath.Join(state, appArmorVersionFile))
				if err != nil || strings.TrimSpace(string(b)) != version {
					t.Errorf("version file %q (%v), want %q", b, err, version)
				}
				if !strings.Contains(string(fp.text), "profile "+spec.AppArmorDefaultProfile+" ") || !strings.Contains(string(fp.text), version) {
					t.Errorf("parser got no versioned %s profile:\n%s", spec.AppArmorDefaultProfile, fp.text)
				}
			}
		})
	}
}

// A parser that succeeds without the kernel listing the profile must not make RuntimeDefault
// apply a profile that is not there (runc would fail every start).
func TestSetUpAppArmorDefaultNotListed(t *testing.T) {
	fs := t.TempDir()
	writeTestFile(t, filepath.Join(fs, "profiles"), "")
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	got := setUpAppArmorDefault(context.Background(), spec.AppArmorNode{Enabled: true, FS: fs}, silentParser{}, t.TempDir(), log)
	if got.Default != "" || !strings.Contains(got.NoDefault, "does not list it") {
		t.Fatalf("node %+v", got)
	}
}

type silentParser struct{}

func (silentParser) Replace(context.Context, []byte) error { return nil }

func TestAppArmorCondition(t *testing.T) {
	if c := (hostSecurity{}).appArmorCondition(); c != nil {
		t.Fatalf("condition %v without apparmor", c)
	}
	on := hostSecurity{apparmor: spec.AppArmorNode{Enabled: true, Default: spec.AppArmorDefaultProfile}}
	if c := on.appArmorCondition(); c == nil || !c.Status {
		t.Fatalf("condition %v with the profile loaded", c)
	}
	off := hostSecurity{apparmor: spec.AppArmorNode{Enabled: true, NoDefault: "install the apparmor package"}}
	if c := off.appArmorCondition(); c == nil || c.Status || !strings.Contains(c.Message, "install the apparmor package") {
		t.Fatalf("condition %v without the profile", c)
	}
}

func writeTestFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}
