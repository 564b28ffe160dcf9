package runtime

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/runc/libcontainer"
)

// CheckpointOptions describe one checkpoint of a running container.
type CheckpointOptions struct {
	// ImagesDir receives CRIU's image files and its dump.log; WorkDir its other files.
	ImagesDir, WorkDir string
	// Stop ends the container after the dump; by default it keeps running, as the
	// kubelet's checkpoint API expects.
	Stop bool
}

// criuLogLines is how many of CRIU's error lines an error carries.
const criuLogLines = 5

// Checkpoint dumps a running container's processes with CRIU through libcontainer.
// Established TCP connections, unconnected external unix sockets, file locks and shell
// jobs are refused by CRIU (those options stay off): a restore into a new pod network
// namespace could not keep them. libcontainer has the pod's network and PID namespaces
// dumped as external ones, so the restore can join the new pod's.
//
// CRIU cannot be interrupted half way: ctx ending returns at once with ctx.Err(), CRIU
// goes on and writes into ImagesDir, which the caller removes.
func (m *Manager) Checkpoint(ctx context.Context, id string, opts CheckpointOptions) error {
	if opts.ImagesDir == "" || opts.WorkDir == "" {
		return fmt.Errorf("checkpoint container %q: images and work directories are required: %w", id, errdefs.ErrInvalidArgument)
	}
	c, err := m.get(id)
	if err != nil {
		return err
	}
	if err := checkpointable(c); err != nil {
		return fmt.Errorf("checkpoint container %q: %w", id, err)
	}
	criuOpts := &libcontainer.CriuOpts{
		ImagesDirectory: opts.ImagesDir,
		WorkDirectory:   opts.WorkDir,
		LeaveRunning:    !opts.Stop,
	}
	done := make(chan error, 1)
	go func() {
		// The dump runs criu as our child; keep the orphan reaper from stealing its exit.
		release := m.reaper.hold()
		defer release()
		done <- c.lc.Checkpoint(criuOpts)
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		return fmt.Errorf("checkpoint container %q: %w", id, ctx.Err())
	}
	if err != nil {
		return fmt.Errorf("checkpoint container %q: %w%s", id, err, criuErrors(filepath.Join(opts.ImagesDir, "dump.log")))
	}
	return nil
}

// checkpointable refuses what berth cannot restore: a container that is not running
// (there is no process to dump) and one with a terminal, whose master side the shim
// holds and CRIU would have to hand back to a new shim.
func checkpointable(c *container) error {
	if st := c.status(); st.Status != StatusRunning || c.lc == nil {
		return fmt.Errorf("it is %s, not running: %w", st.Status, errdefs.ErrFailedPrecondition)
	}
	if c.tty {
		return fmt.Errorf("it has a tty, whose master the shim holds: berth does not checkpoint terminals: %w", errdefs.ErrFailedPrecondition)
	}
	return nil
}

// criuErrors returns the last error lines of a CRIU log, for an error message: libcontainer
// reports only that CRIU failed.
func criuErrors(log string) string {
	f, err := os.Open(log)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.Contains(sc.Text(), "Error") {
			lines = append(lines, strings.TrimSpace(sc.Text()))
		}
	}
	if len(lines) == 0 {
		return ""
	}
	if len(lines) > criuLogLines {
		lines = lines[len(lines)-criuLogLines:]
	}
	return " (criu: " + strings.Join(lines, "; ") + ")"
}
