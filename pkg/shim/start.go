package shim

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// DaemonizeFlag makes berth-shim re-execute itself in a new session and
// exit at once, so that the real shim is nobody's child but init's.
const DaemonizeFlag = "--daemonize"

// defaultStartTimeout bounds Start when ctx has no deadline.
const defaultStartTimeout = 10 * time.Second

// Start spawns a detached shim for a sandbox and returns a client once its
// socket answers. The agent only waits for a short-lived intermediate
// process: the shim itself runs in its own session, reparented away from
// the agent, so killing the agent leaves the shim and its containers alone.
// A shim already answering in Dir is errdefs.ErrAlreadyExists.
func Start(ctx context.Context, opts StartOptions) (*Client, error) {
	if opts.Binary == "" || opts.SandboxID == "" || opts.Dir == "" || opts.RuntimeRoot == "" {
		return nil, fmt.Errorf("start shim: binary, sandbox id, dir and runtime root are required: %w", errdefs.ErrInvalidArgument)
	}
	if c, err := Connect(ctx, opts.Dir); err == nil {
		c.Close()
		return nil, fmt.Errorf("start shim for %s: one is already serving in %s: %w", opts.SandboxID, opts.Dir, errdefs.ErrAlreadyExists)
	}
	if err := os.MkdirAll(opts.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("start shim for %s: %w", opts.SandboxID, err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, defaultStartTimeout)
		defer cancel()
	}
	if err := spawn(opts); err != nil {
		return nil, err
	}
	c, err := waitReady(ctx, opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w%s", opts.SandboxID, err, logTail(opts.Dir))
	}
	return c, nil
}

// spawn runs the intermediate "berth-shim --daemonize ..." and waits for it.
func spawn(opts StartOptions) error {
	logFile, err := os.OpenFile(filepath.Join(opts.Dir, LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("open shim log: %w", err)
	}
	defer logFile.Close()
	args := []string{DaemonizeFlag, "--id", opts.SandboxID, "--dir", opts.Dir, "--runtime-root", opts.RuntimeRoot}
	if opts.CgroupDriver != "" {
		args = append(args, "--cgroup-driver", opts.CgroupDriver)
	}
	cmd := exec.Command(opts.Binary, args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = opts.Dir
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("spawn shim for %s: %w%s", opts.SandboxID, err, logTail(opts.Dir))
	}
	return nil
}

func waitReady(ctx context.Context, dir string) (*Client, error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		c, err := Connect(ctx, dir)
		if err == nil {
			return c, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("wait for socket: %w (last: %w)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

// logTail returns the end of the shim's log, to explain a failed start.
func logTail(dir string) string {
	data, err := os.ReadFile(filepath.Join(dir, LogName))
	if err != nil || len(data) == 0 {
		return ""
	}
	const max = 1024
	if len(data) > max {
		data = data[len(data)-max:]
	}
	return "; shim log: " + string(bytes.TrimSpace(data))
}

// Daemonize re-executes the running binary with args in a new session,
// stdio inherited, and returns without waiting: cmd/shim calls it for
// DaemonizeFlag and exits.
func Daemonize(args []string) error {
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find shim binary: %w", err)
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return err
	}
	defer devnull.Close()
	cmd := exec.Command(exe, args...)
	cmd.Stdin = devnull
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start shim: %w", err)
	}
	return cmd.Process.Release()
}
