package shim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// DaemonizeFlag makes berth-shim re-execute itself in a new session and
// exit at once, so that the real shim is nobody's child but init's.
const DaemonizeFlag = "--daemonize"

// ReadyFDFlag names the descriptor on which the shim writes ReadyLine once its sockets
// listen: the agent waits on a pipe instead of polling for the socket.
const ReadyFDFlag = "--ready-fd"

// OCIRuntimeFlag passes StartOptions.OCIRuntime to the shim.
const OCIRuntimeFlag = "--oci-runtime"

// OCIShimCgroupsFlag passes StartOptions.OCIShimCgroups to the shim.
const OCIShimCgroupsFlag = "--oci-shim-cgroups"

// ReadyLine is what the shim writes on its ready descriptor.
const ReadyLine = "ready\n"

// readyFD is the ready pipe's descriptor number in the shim (the first of ExtraFiles).
const readyFD = 3

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
	ready, err := spawn(opts)
	if err != nil {
		return nil, err
	}
	defer ready.Close()
	c, err := waitReady(ctx, ready, opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("start shim for %s: %w%s", opts.SandboxID, err, logTail(opts.Dir))
	}
	return c, nil
}

// spawn runs the intermediate "berth-shim --daemonize ..." and waits for it. It returns the
// read end of the shim's ready pipe.
func spawn(opts StartOptions) (*os.File, error) {
	logFile, err := os.OpenFile(filepath.Join(opts.Dir, LogName), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open shim log: %w", err)
	}
	defer logFile.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("ready pipe: %w", err)
	}
	defer w.Close() // the shim holds its copy: EOF without a line means it died
	cmd := exec.Command(opts.Binary, spawnArgs(opts)...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	cmd.Dir = opts.Dir
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Run(); err != nil {
		r.Close()
		return nil, fmt.Errorf("spawn shim for %s: %w%s", opts.SandboxID, err, logTail(opts.Dir))
	}
	return r, nil
}

// spawnArgs are the intermediate shim's arguments.
func spawnArgs(opts StartOptions) []string {
	args := []string{DaemonizeFlag,
		"--id", opts.SandboxID, "--dir", opts.Dir, "--runtime-root", opts.RuntimeRoot,
		ReadyFDFlag, strconv.Itoa(readyFD)}
	if opts.CgroupDriver != "" {
		args = append(args, "--cgroup-driver", opts.CgroupDriver)
	}
	if opts.OCIRuntime != "" {
		args = append(args, OCIRuntimeFlag, opts.OCIRuntime)
	}
	if opts.OCIShimCgroups {
		args = append(args, OCIShimCgroupsFlag)
	}
	return args
}

// waitReady waits for the shim's ready line, then connects.
func waitReady(ctx context.Context, ready *os.File, dir string) (*Client, error) {
	if deadline, ok := ctx.Deadline(); ok {
		_ = ready.SetReadDeadline(deadline)
	}
	line := make([]byte, len(ReadyLine))
	if _, err := io.ReadFull(ready, line); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errors.New("the shim exited before serving")
		}
		return nil, fmt.Errorf("wait for the shim to serve: %w", err)
	}
	if string(line) != ReadyLine {
		return nil, fmt.Errorf("unexpected ready line %q", line)
	}
	return Connect(ctx, dir)
}

// SignalReady tells the agent that spawned this shim that it serves: the ready line on fd,
// which is then closed. fd < 0 (no ready pipe) does nothing.
func SignalReady(fd int) error {
	if fd < 0 {
		return nil
	}
	f := os.NewFile(uintptr(fd), "ready")
	defer f.Close()
	if _, err := f.WriteString(ReadyLine); err != nil {
		return fmt.Errorf("signal ready: %w", err)
	}
	return nil
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
// ready is the ready pipe's descriptor inherited from the agent (ReadyFDFlag), -1 for none.
func Daemonize(args []string, ready int) error {
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
	if ready >= 0 {
		// The ready pipe goes on to the shim as its first extra file: readyFD there too.
		cmd.ExtraFiles = []*os.File{os.NewFile(uintptr(ready), "ready")}
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start shim: %w", err)
	}
	return cmd.Process.Release()
}
