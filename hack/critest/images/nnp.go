package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
)

// nnpSource is kubernetes' test/images/nonewprivs/nnp.c in Go. It must be a real setuid
// binary: busybox drops setuid privileges for its applets, so no busybox applet can show
// whether no_new_privs stopped the escalation.
const nnpSource = `package main

import (
	"os"
	"strconv"
)

func main() {
	os.Stdout.WriteString("Effective uid: " + strconv.Itoa(os.Geteuid()) + "\n")
}
`

// buildNNP compiles nnpSource into a static binary with the go tool at goBin. The build is
// reproducible (-trimpath, no build id) so the image digest is stable for one toolchain.
func buildNNP(goBin string) ([]byte, error) {
	dir, err := os.MkdirTemp("", "berth-critest-nnp-")
	if err != nil {
		return nil, fmt.Errorf("build nnp: %w", err)
	}
	defer os.RemoveAll(dir)
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module nnp\n\ngo 1.21\n"), 0o644); err != nil {
		return nil, fmt.Errorf("build nnp: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(nnpSource), 0o644); err != nil {
		return nil, fmt.Errorf("build nnp: %w", err)
	}
	out := filepath.Join(dir, "nnp")
	cmd := exec.Command(goBin, "build", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH,
		"GOWORK=off", "GOFLAGS=", "GOTOOLCHAIN=local")
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build nnp: %w: %s", err, b)
	}
	return os.ReadFile(out)
}
