package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/berth-runtime/berth/pkg/cri/spec"
)

// appArmorParser loads AppArmor policy into the kernel.
type appArmorParser interface {
	// Replace loads the profiles in text, replacing loaded ones of the same name, and does
	// not cache the compiled policy (berth reloads from its own text, never from a cache
	// an older berth left behind).
	Replace(ctx context.Context, text []byte) error
}

// execParser runs apparmor_parser, which the apparmor package installs.
type execParser struct{ path string }

func (p execParser) Replace(ctx context.Context, text []byte) error {
	cmd := exec.CommandContext(ctx, p.path, "-Kr")
	cmd.Stdin = bytes.NewReader(text)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("run %s -Kr: %w: %s", p.path, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// findAppArmorParser looks for apparmor_parser in PATH and where Debian and Ubuntu install it
// (sbin directories are often missing from a service's PATH).
func findAppArmorParser() (string, bool) {
	if p, err := exec.LookPath("apparmor_parser"); err == nil {
		return p, true
	}
	for _, p := range []string{"/usr/sbin/apparmor_parser", "/sbin/apparmor_parser"} {
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}

// appArmorLoadTimeout bounds apparmor_parser at startup; compiling the profile takes well
// under a second.
const appArmorLoadTimeout = 30 * time.Second

// appArmorVersionFile records the version of the default profile this boot's kernel was last
// given, under the agent's state directory (a tmpfs, emptied on reboot like the kernel's
// policy). A profile that is loaded with the same version is left alone: replacing it would
// recompile it at every agent restart for nothing.
const appArmorVersionFile = "apparmor-default.version"

// setUpAppArmorDefault loads berth's RuntimeDefault profile where AppArmor is enabled and it is
// not loaded at its current version; parser is nil where apparmor_parser is not installed. It
// returns the node as containers will see it: Default set when the profile is loaded, NoDefault
// saying how to fix it otherwise. It runs once, at startup.
func setUpAppArmorDefault(ctx context.Context, node spec.AppArmorNode, parser appArmorParser, stateDir string, log *slog.Logger) spec.AppArmorNode {
	if !node.Enabled {
		return node
	}
	text, version := spec.AppArmorDefaultText()
	stamp := filepath.Join(stateDir, appArmorVersionFile)
	if node.Default != "" {
		if b, err := os.ReadFile(stamp); err == nil && strings.TrimSpace(string(b)) == version {
			log.Info("apparmor default profile is loaded", "profile", node.Default, "version", version)
			return node
		}
	}
	if parser == nil {
		if node.Default != "" {
			log.Warn("apparmor_parser is not installed: keeping the loaded default profile, which berth cannot check or update",
				"profile", node.Default)
			return node
		}
		node.NoDefault = "apparmor_parser is not installed: install the apparmor package and restart berth"
		log.Warn("apparmor is enabled but apparmor_parser is not installed: containers asking for RuntimeDefault will be refused; install the apparmor package",
			"profile", spec.AppArmorDefaultProfile)
		return node
	}
	if err := loadAppArmorDefault(ctx, node.FS, parser, text); err != nil {
		node.Default = ""
		node.NoDefault = fmt.Sprintf("berth could not load it: %v", err)
		log.Warn("cannot load the apparmor default profile: containers asking for RuntimeDefault will be refused", "err", err)
		return node
	}
	if err := os.WriteFile(stamp, []byte(version+"\n"), 0o644); err != nil {
		// Only costs a reload at the next start.
		log.Warn("cannot record the apparmor default profile's version", "err", err)
	}
	node.Default = spec.AppArmorDefaultProfile
	log.Info("loaded the apparmor default profile", "profile", node.Default, "version", version)
	return node
}

// loadAppArmorDefault runs the parser and checks that the kernel lists the profile after it.
func loadAppArmorDefault(ctx context.Context, fs string, parser appArmorParser, text []byte) error {
	ctx, cancel := context.WithTimeout(ctx, appArmorLoadTimeout)
	defer cancel()
	if err := parser.Replace(ctx, text); err != nil {
		return fmt.Errorf("load apparmor profile %q: %w", spec.AppArmorDefaultProfile, err)
	}
	loaded, err := spec.AppArmorProfileLoaded(fs, spec.AppArmorDefaultProfile)
	if err != nil {
		return fmt.Errorf("load apparmor profile %q: %w", spec.AppArmorDefaultProfile, err)
	}
	if !loaded {
		return fmt.Errorf("load apparmor profile %q: apparmor_parser succeeded but the kernel does not list it: %w",
			spec.AppArmorDefaultProfile, errors.ErrUnsupported)
	}
	return nil
}
