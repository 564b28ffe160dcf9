package main

import (
	"debug/buildinfo"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
)

// versionDeps are the dependencies whose versions decide berth's behaviour, in the order
// `berth version` prints them. runc's libcontainer is linked into berth-shim only (the one
// importer, pkg/runtime), so its version is read from the shim binary.
var versionDeps = []struct{ label, module string }{
	{"cri-api", "k8s.io/cri-api"},
	{"nri", "github.com/containerd/nri"},
	{"cni", "github.com/containernetworking/cni"},
	{"go-containerregistry", "github.com/google/go-containerregistry"},
}

const runcModule = "github.com/opencontainers/runc"

// printVersion writes berth's version, the Go toolchain it was built with and the versions
// of the dependencies an operator asks about when reporting a bug.
func printVersion(w io.Writer) error {
	info, _ := debug.ReadBuildInfo()
	shim, shimInfo := shimBuildInfo()
	fmt.Fprint(w, versionText(info, shim, shimInfo))
	return nil
}

// versionText renders the version report from the agent's and the shim's build info
// (either may be nil: a binary built without module support, a shim not found).
func versionText(info *debug.BuildInfo, shimPath string, shim *debug.BuildInfo) string {
	var b strings.Builder
	fmt.Fprintf(&b, "berth %s\n", version)
	fmt.Fprintf(&b, "go: %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
	for _, d := range versionDeps {
		fmt.Fprintf(&b, "%s: %s\n", d.label, depVersion(info, d.module))
	}
	switch {
	case shim == nil && shimPath == "":
		fmt.Fprintf(&b, "runc (libcontainer, in berth-shim): unknown (berth-shim not found)\n")
	case shim == nil:
		fmt.Fprintf(&b, "runc (libcontainer, in berth-shim): unknown (cannot read %s)\n", shimPath)
	default:
		fmt.Fprintf(&b, "runc (libcontainer, in berth-shim %s): %s\n", shimPath, depVersion(shim, runcModule))
	}
	return b.String()
}

// depVersion is the version of module the binary was built with, following a replace.
func depVersion(info *debug.BuildInfo, module string) string {
	if info == nil {
		return "unknown"
	}
	for _, d := range info.Deps {
		if d.Path != module {
			continue
		}
		if d.Replace != nil {
			return d.Replace.Version + " (replaces " + d.Version + ")"
		}
		return d.Version
	}
	return "not linked"
}

// shimBuildInfo finds berth-shim where the agent does by default (beside it, then $PATH)
// and reads its build info.
func shimBuildInfo() (string, *debug.BuildInfo) {
	path := ""
	if exe, err := os.Executable(); err == nil {
		if p := filepath.Join(filepath.Dir(exe), "berth-shim"); fileExists(p) {
			path = p
		}
	}
	if path == "" {
		if p, err := exec.LookPath("berth-shim"); err == nil {
			path = p
		}
	}
	if path == "" {
		return "", nil
	}
	info, err := buildinfo.ReadFile(path)
	if err != nil {
		return path, nil
	}
	return path, info
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}
