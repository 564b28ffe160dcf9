package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/berth-runtime/berth/test/fixture"
)

// Mirror is the registry name the benchmark's images live under: a name that cannot resolve,
// so that both runtimes reach the loopback registry only through their hosts.toml mirror.
const Mirror = "bench.invalid"

// Image references both runtimes pull.
const (
	BusyboxRef = Mirror + "/berth/busybox:latest"
	PauseRef   = Mirror + "/berth/pause:latest"
	BigRef     = Mirror + "/berth/big:latest"
)

// pauseSource is a pause of our own (the real one is not on this machine): sleep in pause(2)
// until SIGTERM or SIGINT, reaping whatever is re-parented to it. Static, so it is one small
// process, as the upstream pause is.
const pauseSource = `#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>
static void stop(int s) { (void)s; _exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, 0, WNOHANG) > 0); }
int main(void) {
	signal(SIGTERM, stop);
	signal(SIGINT, stop);
	signal(SIGCHLD, reap);
	for (;;) pause();
}
`

// buildPause compiles pauseSource with the C compiler, statically.
func buildPause() ([]byte, error) {
	dir, err := os.MkdirTemp("", "benchcompare-pause-")
	if err != nil {
		return nil, fmt.Errorf("build pause: %w", err)
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "pause.c")
	if err := os.WriteFile(src, []byte(pauseSource), 0o644); err != nil {
		return nil, fmt.Errorf("build pause: %w", err)
	}
	out := filepath.Join(dir, "pause")
	if b, err := exec.Command("cc", "-static", "-Os", "-s", "-o", out, src).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("build pause (cc -static): %w: %s", err, b)
	}
	return os.ReadFile(out)
}

func serveRegistry(args []string) error {
	fs := flag.NewFlagSet("registry", flag.ContinueOnError)
	certsDir := fs.String("certs-dir", "", "write "+Mirror+"/hosts.toml pointing at the registry here")
	pidfile := fs.String("pidfile", "", "write the pid here once serving")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *certsDir == "" {
		return fmt.Errorf("registry: --certs-dir is required")
	}
	pause, err := buildPause()
	if err != nil {
		return err
	}
	b := new(fixture.Builder)
	busybox, err := b.Busybox()
	if err != nil {
		return fmt.Errorf("build busybox image: %w", err)
	}
	pauseImg, err := b.Busybox(fixture.WithFiles(fixture.File{Path: "/pause", Data: pause, Mode: 0o755}),
		fixture.WithEntrypoint("/pause"), fixture.WithCmd(), fixture.WithUser("65535:65535"))
	if err != nil {
		return fmt.Errorf("build pause image: %w", err)
	}
	big, err := b.Busybox(fixture.WithPadding(5, 200<<20))
	if err != nil {
		return fmt.Errorf("build big image: %w", err)
	}
	reg, err := fixture.StartRegistry("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer reg.Close()
	for ref, img := range map[string]v1.Image{BusyboxRef: busybox, PauseRef: pauseImg, BigRef: big} {
		if _, err := reg.Push(strings.TrimPrefix(ref, Mirror+"/"), img); err != nil {
			return fmt.Errorf("push %s: %w", ref, err)
		}
	}
	hd := filepath.Join(*certsDir, Mirror)
	if err := os.MkdirAll(hd, 0o755); err != nil {
		return fmt.Errorf("write mirror: %w", err)
	}
	hosts := fmt.Sprintf("# benchcompare: %s is the loopback test registry.\nserver = \"https://%s\"\ncapabilities = []\n\n[host.\"http://%s\"]\n  capabilities = [\"pull\", \"resolve\"]\n",
		Mirror, Mirror, reg.Addr())
	if err := os.WriteFile(filepath.Join(hd, "hosts.toml"), []byte(hosts), 0o644); err != nil {
		return fmt.Errorf("write mirror: %w", err)
	}
	s, err := reg.ServeUntilSignal(*pidfile, os.Stdout)
	if s != nil {
		fmt.Fprintf(os.Stderr, "benchcompare registry: %s, stopping\n", s)
	}
	return err
}
