// Package e2e drives the real berth agent through the CRI client: it starts
// the agent and a loopback registry of test images, then runs real containers as root.
package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/berth-runtime/berth/test/e2e/agentproc"
	"github.com/berth-runtime/berth/test/fixture"
)

// suite is what every test shares: one registry of test images and the
// binaries under test. Each test that needs an agent starts its own or uses
// the shared one (sharedAgent), which TestMain stops at the end.
type suite struct {
	berthBin, shimBin string
	registry          *fixture.Registry
	images            testImages
	shared            *agent
}

// testImages are the references of the images in the suite's registry.
type testImages struct {
	busybox, nonroot, multiarch string
	configured                  string // busybox with entrypoint, env, workdir and stop signal set
	volume                      string // busybox declaring VOLUME /data, which holds a file owned by 1000
}

var env suite

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "e2e: these tests run real containers and need root")
		return 1
	}
	cleanup, err := setupSuite()
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		cleanup()
		return 1
	}
	code := m.Run()
	cleanup()
	return code
}

func setupSuite() (cleanup func(), err error) {
	var undo agentproc.Undo
	cleanup = undo.Run
	if env.berthBin, env.shimBin, err = agentproc.Binaries(&undo, "../.."); err != nil {
		return cleanup, err
	}
	reg, err := fixture.StartRegistry("127.0.0.1:0")
	if err != nil {
		return cleanup, err
	}
	undo.Add(func() { reg.Close() })
	env.registry = reg
	if env.images, err = pushTestImages(reg); err != nil {
		return cleanup, err
	}
	a, err := startAgent(agentOptions{})
	if err != nil {
		return cleanup, err
	}
	undo.Add(func() { a.stopAndClean() })
	undo.Add(removeDefaultCgroupParent)
	env.shared = a
	return cleanup, nil
}

// removeDefaultCgroupParent removes berth's default cgroup parent once the
// agents are gone. rmdir only succeeds on an empty cgroup, so a parent still
// in use by another berth on this machine is left alone.
func removeDefaultCgroupParent() {
	dirs, _ := filepath.Glob("/sys/fs/cgroup/*/berth")
	if d := "/sys/fs/cgroup/berth"; fileExists(d) {
		dirs = append(dirs, d)
	}
	for _, d := range dirs {
		_ = syscall.Rmdir(d)
	}
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func pushTestImages(reg *fixture.Registry) (testImages, error) {
	var b fixture.Builder
	var out testImages
	type push struct {
		ref  *string
		name string
		opts []fixture.Option
	}
	for _, p := range []push{
		{&out.busybox, "berth/busybox:latest", nil},
		{&out.nonroot, "berth/busybox:nonroot", []fixture.Option{fixture.WithUser("1000")}},
		{&out.configured, "berth/busybox:configured", []fixture.Option{
			fixture.WithEntrypoint("/bin/sh", "-c"), fixture.WithCmd("trap 'echo got usr1; exit 42' USR1; echo configured; while true; do sleep 0.1; done"),
			fixture.WithEnv("FROM_IMAGE=yes"), fixture.WithWorkingDir("/tmp"), fixture.WithStopSignal("SIGUSR1"),
		}},
		{&out.volume, "berth/busybox:volume", []fixture.Option{fixture.WithVolumes("/data"), fixture.WithFiles(
			fixture.File{Path: "/data", Mode: os.ModeDir | 0o750, UID: 1000, GID: 1000},
			fixture.File{Path: "/data/seed", Data: []byte("from image\n"), Mode: 0o644, UID: 1000, GID: 1000},
		)}},
	} {
		img, err := b.Busybox(p.opts...)
		if err != nil {
			return out, fmt.Errorf("build %s: %w", p.name, err)
		}
		if _, err := reg.Push(p.name, img); err != nil {
			return out, fmt.Errorf("push %s: %w", p.name, err)
		}
		*p.ref = reg.Ref(p.name)
	}
	idx, err := b.MultiArch()
	if err != nil {
		return out, fmt.Errorf("build multiarch index: %w", err)
	}
	if _, err := reg.PushIndex("berth/multiarch:latest", idx); err != nil {
		return out, fmt.Errorf("push multiarch index: %w", err)
	}
	out.multiarch = reg.Ref("berth/multiarch:latest")
	return out, nil
}
