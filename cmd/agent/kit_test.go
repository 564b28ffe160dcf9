package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/images"
)

func writeFile(t *testing.T, dir, name, data string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigValidate(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name    string
		file    string // "" = no such file
		wantErr string // the setting the error must name; "" = valid
	}{
		{name: "valid", file: "log_level = \"debug\"\n[images]\npinned = [\"busybox\"]\n"},
		{name: "bad value", file: "[images]\nmax_concurrent_downloads = 0\n", wantErr: "images.max_concurrent_downloads"},
		{name: "bad enum", file: "log_format = \"xml\"\n", wantErr: "log_format"},
		{name: "unknown key", file: "[metrics]\nadress = \"127.0.0.1:0\"\n", wantErr: "metrics.adress"},
		{name: "wrong type", file: "[images]\nmax_concurrent_downloads = \"many\"\n", wantErr: "max_concurrent_downloads"},
		{name: "missing file", wantErr: "absent.toml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "absent.toml")
			if tt.file != "" {
				path = writeFile(t, dir, strings.ReplaceAll(tt.name, " ", "_")+".toml", tt.file)
			}
			var out bytes.Buffer
			err := run([]string{"config", "validate", path}, &out)
			if tt.wantErr == "" {
				if err != nil || !strings.Contains(out.String(), "valid") {
					t.Fatalf("validate = %v, output %q", err, out.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("validate = %v, want an error naming %q", err, tt.wantErr)
			}
		})
	}
	// The file named by --config is the default, and a broken default config does not stop
	// validating another file.
	good := writeFile(t, dir, "good.toml", "")
	bad := writeFile(t, dir, "bad.toml", "log_level = \"loud\"\n")
	if err := run([]string{"--config", bad, "config", "validate", good}, &bytes.Buffer{}); err != nil {
		t.Fatalf("validate FILE with a broken --config: %v", err)
	}
	if err := run([]string{"--config", bad, "config", "validate"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "log_level") {
		t.Fatalf("validate of the --config file = %v, want log_level named", err)
	}
}

func TestCompletion(t *testing.T) {
	bash, err := exec.LookPath("bash")
	for _, shell := range []string{"bash", "zsh", "fish"} {
		t.Run(shell, func(t *testing.T) {
			var out bytes.Buffer
			if err := run([]string{"completion", shell}, &out); err != nil {
				t.Fatal(err)
			}
			for _, w := range append(slices.Clone(completionCommands), "validate", "import", "--log-format") {
				if !strings.Contains(out.String(), strings.TrimPrefix(w, "--")) {
					t.Errorf("%s completion lacks %q", shell, w)
				}
			}
			if shell == "fish" || err != nil {
				return
			}
			// The script must at least parse, and complete a command and a sub-command.
			script := out.String() + `
COMP_WORDS=(berth con); COMP_CWORD=1; _berth; echo "1:${COMPREPLY[*]}"
COMP_WORDS=(berth --log-level debug config va); COMP_CWORD=4; _berth; echo "2:${COMPREPLY[*]}"
COMP_WORDS=(berth --log-format ""); COMP_CWORD=2; _berth; echo "3:${COMPREPLY[*]}"
`
			if shell == "zsh" {
				return // needs zsh's bashcompinit
			}
			got, err := exec.Command(bash, "-c", script).CombinedOutput()
			if err != nil {
				t.Fatalf("bash: %v\n%s", err, got)
			}
			for _, w := range []string{"1:config", "2:validate", "3:text json"} {
				if !strings.Contains(string(got), w) {
					t.Errorf("bash completion output lacks %q:\n%s", w, got)
				}
			}
		})
	}
	if err := run([]string{"completion", "tcsh"}, &bytes.Buffer{}); err == nil {
		t.Fatal("completion for an unknown shell succeeded")
	}
}

func TestVersionText(t *testing.T) {
	info := &debug.BuildInfo{Deps: []*debug.Module{
		{Path: "k8s.io/cri-api", Version: "v0.37.2"},
		{Path: "github.com/containerd/nri", Version: "v0.10.0"},
		{Path: "github.com/google/go-containerregistry", Version: "v0.20.0", Replace: &debug.Module{Path: "../ggcr", Version: "v0.20.1"}},
	}}
	shim := &debug.BuildInfo{Deps: []*debug.Module{{Path: "github.com/opencontainers/runc", Version: "v1.3.0"}}}
	got := versionText(info, "/usr/bin/berth-shim", shim)
	for _, w := range []string{"berth " + version, "go: go1.", "cri-api: v0.37.2", "nri: v0.10.0", "cni: not linked",
		"go-containerregistry: v0.20.1 (replaces v0.20.0)", "runc (libcontainer, in berth-shim /usr/bin/berth-shim): v1.3.0"} {
		if !strings.Contains(got, w) {
			t.Errorf("version lacks %q:\n%s", w, got)
		}
	}
	if got := versionText(nil, "", nil); !strings.Contains(got, "berth-shim not found") || !strings.Contains(got, "cri-api: unknown") {
		t.Errorf("version without build info:\n%s", got)
	}
	var out bytes.Buffer
	if err := run([]string{"version"}, &out); err != nil || !strings.Contains(out.String(), "cri-api: ") {
		t.Fatalf("berth version = %v:\n%s", err, out.String())
	}
}

func TestLogFormat(t *testing.T) {
	for _, format := range []string{"text", "json"} {
		t.Run(format, func(t *testing.T) {
			dir := t.TempDir()
			file := writeFile(t, dir, "c.toml", "")
			var out bytes.Buffer
			if err := run([]string{"--config", file, "--log-format", format, "config"}, &out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), `log_format = "`+format+`"`) {
				t.Fatalf("--log-format %s not in the config:\n%s", format, out.String())
			}
			cfg := config.Default()
			cfg.LogFormat = format
			var logs bytes.Buffer
			newLogger(cfg, &logs, new(slog.LevelVar)).Info("hello", "k", "v w")
			line := strings.TrimSpace(logs.String())
			var m map[string]any
			isJSON := json.Unmarshal([]byte(line), &m) == nil
			if isJSON != (format == "json") {
				t.Fatalf("%s log line %q", format, line)
			}
			if format == "text" && !strings.Contains(line, `msg=hello k="v w"`) {
				t.Fatalf("text log line is not logfmt: %q", line)
			}
		})
	}
	if err := run([]string{"--log-format", "xml", "config"}, &bytes.Buffer{}); err == nil || !strings.Contains(err.Error(), "log_format") {
		t.Fatalf("--log-format xml = %v, want log_format named", err)
	}
}

type fakeReloadImages struct {
	got []images.Reloadable
	err error
}

func (f *fakeReloadImages) Reload(r images.Reloadable) error {
	f.got = append(f.got, r)
	return f.err
}

type fakeMetrics struct{ addrs []string }

func (f *fakeMetrics) SetMetricsAddress(a string) error {
	f.addrs = append(f.addrs, a)
	return nil
}

// newTestReloader loads file as the agent would at startup, with --root given as a flag.
func newTestReloader(t *testing.T, file string) (*reloader, *fakeReloadImages, *fakeMetrics, *bytes.Buffer) {
	t.Helper()
	opts := &flagOptions{configPath: file, explicitConfig: true, root: "/flag/root"}
	cfg, err := opts.load()
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	level := new(slog.LevelVar)
	imgs, metrics := &fakeReloadImages{}, &fakeMetrics{}
	r := &reloader{load: opts.load, cur: cfg, level: level, images: imgs, metrics: metrics, log: newLogger(cfg, &logs, level)}
	return r, imgs, metrics, &logs
}

func TestReload(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "c.toml", "log_level = \"info\"\nstate = \"/run/a\"\n")
	r, imgs, metrics, logs := newTestReloader(t, file)

	writeFile(t, dir, "c.toml", `log_level = "debug"
state = "/run/b"
root = "/file/root"
[images]
certs_dir = "/etc/other/certs.d"
pinned = ["busybox"]
[metrics]
address = "127.0.0.1:9100"
[nri]
plugin_request_timeout = "5s"
`)
	restart, err := r.reload()
	if err != nil {
		t.Fatal(err)
	}
	// The --root flag still overrides the file, so root did not change.
	if want := []string{"nri.plugin_request_timeout", "state"}; !slices.Equal(restart, want) {
		t.Errorf("needs restart = %v, want %v", restart, want)
	}
	if r.level.Level() != slog.LevelDebug {
		t.Errorf("log level = %v after reload, want debug", r.level.Level())
	}
	if len(imgs.got) != 1 || imgs.got[0].CertsDir != "/etc/other/certs.d" || !slices.Equal(imgs.got[0].Pinned, []string{"busybox"}) {
		t.Errorf("image settings reloaded with %+v", imgs.got)
	}
	if !slices.Equal(metrics.addrs, []string{"127.0.0.1:9100"}) {
		t.Errorf("metrics address set to %v", metrics.addrs)
	}
	if !strings.Contains(logs.String(), "restart") {
		t.Errorf("settings needing a restart were not logged:\n%s", logs)
	}

	// Nothing changed since: nothing is applied again.
	if _, err := r.reload(); err != nil {
		t.Fatal(err)
	}
	if len(imgs.got) != 1 || len(metrics.addrs) != 1 {
		t.Errorf("an unchanged reload applied again: images %d, metrics %d", len(imgs.got), len(metrics.addrs))
	}

	// A file that does not validate changes nothing.
	writeFile(t, dir, "c.toml", "log_level = \"loud\"\n")
	if _, err := r.reload(); err == nil || !strings.Contains(err.Error(), "log_level") {
		t.Fatalf("reload of an invalid file = %v", err)
	}
	if r.level.Level() != slog.LevelDebug || r.cur.LogLevel != "debug" {
		t.Errorf("invalid reload changed the level to %v", r.level.Level())
	}
}

func TestReloadImageFailureIsRetried(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "c.toml", "")
	r, imgs, _, _ := newTestReloader(t, file)
	imgs.err = errors.New("bad pin")
	writeFile(t, dir, "c.toml", "[images]\npinned = [\"busybox\"]\n")
	if _, err := r.reload(); err != nil {
		t.Fatal(err)
	}
	if len(r.cur.Images.Pinned) != 0 {
		t.Fatalf("pinned recorded as applied although the image store refused it: %v", r.cur.Images.Pinned)
	}
	imgs.err = nil
	if _, err := r.reload(); err != nil {
		t.Fatal(err)
	}
	if len(imgs.got) != 2 || !slices.Equal(r.cur.Images.Pinned, []string{"busybox"}) {
		t.Fatalf("second reload: calls %d, applied %v", len(imgs.got), r.cur.Images.Pinned)
	}
}

// TestSIGHUPReloads sends this process a real SIGHUP.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	file := writeFile(t, dir, "c.toml", "")
	r, _, _, _ := newTestReloader(t, file)
	reloaded := make(chan struct{})
	load := r.load
	r.load = func() (config.Config, error) {
		defer close(reloaded)
		return load()
	}
	writeFile(t, dir, "c.toml", "log_level = \"error\"\n")
	hup, stop := notifyHUP()
	defer stop()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.watch(ctx, hup) }()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	<-reloaded
	cancel()
	<-done
	if r.level.Level() != slog.LevelError {
		t.Fatalf("level after SIGHUP = %v, want error", r.level.Level())
	}
}
