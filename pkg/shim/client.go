package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/shim/api"
)

// Client talks to one pod's shim. It is safe for concurrent use; a blocked
// Wait does not hold up other calls.
type Client struct {
	dir    string
	pid    int
	conn   net.Conn
	client *ttrpc.Client
	svc    api.ShimService
}

// Connect attaches to the shim serving in dir (after an agent restart, or
// after Start). No socket is errdefs.ErrNotFound; a socket nobody answers
// on is errdefs.ErrUnavailable.
func Connect(ctx context.Context, dir string) (*Client, error) {
	sock := filepath.Join(dir, SocketName)
	if _, err := os.Stat(sock); err != nil {
		if os.IsNotExist(err) {
			return nil, fmt.Errorf("connect to shim in %s: %w", dir, errdefs.ErrNotFound)
		}
		return nil, fmt.Errorf("connect to shim in %s: %w", dir, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", sock)
	if err != nil {
		return nil, fmt.Errorf("connect to shim in %s: %w: %w", dir, err, errdefs.ErrUnavailable)
	}
	tc := ttrpc.NewClient(conn)
	c := &Client{dir: dir, conn: conn, client: tc, svc: api.NewShimClient(tc)}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	resp, err := c.svc.Ping(pctx, &api.Empty{})
	if err != nil {
		tc.Close()
		return nil, fromStatus("ping", err)
	}
	c.pid = int(resp.Pid)
	return c, nil
}

// Pid is the shim's process id.
func (c *Client) Pid() int { return c.pid }

// Dir is the shim's directory.
func (c *Client) Dir() string { return c.dir }

// Close drops the connection; the shim and its containers keep running.
func (c *Client) Close() error {
	return c.client.Close()
}

// Create sets a container up, ready to Start, and returns its init's host pid.
func (c *Client) Create(ctx context.Context, req CreateRequest) (int, error) {
	resp, err := c.svc.Create(ctx, &api.CreateRequest{
		Id: req.ID, Bundle: req.Bundle, LogPath: req.LogPath,
		Stdin: req.Stdin, StdinOnce: req.StdinOnce, Tty: req.Tty,
		RestoreImages: req.RestoreImages, RestoreWork: req.RestoreWork,
	})
	if err != nil {
		return 0, fromStatus("create "+req.ID, err)
	}
	return int(resp.Pid), nil
}

// Start runs a created container's process.
func (c *Client) Start(ctx context.Context, id string) error {
	_, err := c.svc.Start(ctx, &api.IDRequest{Id: id})
	return fromStatus("start "+id, err)
}

// Kill signals the container's init, or every process in it with all.
// Signalling a stopped container is not an error.
func (c *Client) Kill(ctx context.Context, id string, signal syscall.Signal, all bool) error {
	_, err := c.svc.Kill(ctx, &api.KillRequest{Id: id, Signal: uint32(signal), All: all})
	return fromStatus("kill "+id, err)
}

// Wait blocks until the container exits and returns its final state.
func (c *Client) Wait(ctx context.Context, id string) (State, error) {
	resp, err := c.svc.Wait(ctx, &api.IDRequest{Id: id})
	if err != nil {
		return State{}, fromStatus("wait "+id, err)
	}
	return stateFromAPI(resp), nil
}

// State returns the container's current state.
func (c *Client) State(ctx context.Context, id string) (State, error) {
	resp, err := c.svc.State(ctx, &api.IDRequest{Id: id})
	if err != nil {
		return State{}, fromStatus("state "+id, err)
	}
	return stateFromAPI(resp), nil
}

// List returns the state of every container the shim owns.
func (c *Client) List(ctx context.Context) ([]State, error) {
	resp, err := c.svc.List(ctx, &api.Empty{})
	if err != nil {
		return nil, fromStatus("list", err)
	}
	out := make([]State, 0, len(resp.Containers))
	for _, s := range resp.Containers {
		out = append(out, stateFromAPI(s))
	}
	return out, nil
}

// Update sets new cgroup resource limits on a running container.
func (c *Client) Update(ctx context.Context, id string, res *specs.LinuxResources) error {
	data, err := json.Marshal(res)
	if err != nil {
		return fmt.Errorf("encode resources of %q: %w", id, err)
	}
	_, err = c.svc.Update(ctx, &api.UpdateRequest{Id: id, Resources: data})
	return fromStatus("update "+id, err)
}

// ReopenLog reopens the container's CRI log (after the kubelet rotated it).
func (c *Client) ReopenLog(ctx context.Context, id string) error {
	_, err := c.svc.ReopenLog(ctx, &api.IDRequest{Id: id})
	return fromStatus("reopen log "+id, err)
}

// Delete removes a stopped (or never started) container; missing is nil.
func (c *Client) Delete(ctx context.Context, id string) error {
	_, err := c.svc.Delete(ctx, &api.IDRequest{Id: id})
	return fromStatus("delete "+id, err)
}

// StartPodInit starts the pod's PID-namespace init and returns its host pid.
func (c *Client) StartPodInit(ctx context.Context, req PodInitRequest) (int, error) {
	var filter []byte
	if req.Seccomp != nil {
		b, err := json.Marshal(req.Seccomp)
		if err != nil {
			return 0, fmt.Errorf("start pod init: encode seccomp filter: %w", err)
		}
		filter = b
	}
	resp, err := c.svc.StartPodInit(ctx, &api.PodInitRequest{
		NetNs: req.NetNS, IpcNs: req.IPCNS, UtsNs: req.UTSNS, CgroupPath: req.CgroupPath, UserNs: req.UserNS,
		Seccomp: filter,
	})
	if err != nil {
		return 0, fromStatus("start pod init", err)
	}
	return int(resp.Pid), nil
}

// Shutdown deletes the shim's stopped (or never started) containers, makes
// the shim exit and waits until its process is gone. It refuses
// (errdefs.ErrFailedPrecondition) while a container still runs: stop it
// first. The client is closed afterwards.
func (c *Client) Shutdown(ctx context.Context) error {
	_, err := c.svc.Shutdown(ctx, &api.Empty{})
	// The shim may exit before its reply makes it out.
	if err != nil && !errors.Is(err, ttrpc.ErrClosed) && !errors.Is(err, ttrpc.ErrServerClosed) {
		return fromStatus("shutdown", err)
	}
	c.client.Close()
	return waitGone(ctx, c.pid)
}

// waitGone waits until pid no longer runs (a zombie counts as gone: its reaper is not us). A
// pidfd becomes readable when the process exits, so the wait ends with it; where pidfd_open
// is missing (Linux < 5.3) it polls.
func waitGone(ctx context.Context, pid int) error {
	if pid <= 0 {
		return nil
	}
	fd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil
		}
		return pollGone(ctx, pid)
	}
	defer unix.Close(fd)
	for processRunning(pid) {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("wait for shim %d to exit: %w", pid, err)
		}
		// Bounded slices, so that ctx is honoured without a second goroutine.
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 100); err != nil && !errors.Is(err, unix.EINTR) {
			return pollGone(ctx, pid)
		}
	}
	return nil
}

func pollGone(ctx context.Context, pid int) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for processRunning(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for shim %d to exit: %w", pid, ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

func processRunning(pid int) bool {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "pid (comm) S ...": the state follows the last ')'.
	for i := len(data) - 1; i >= 0; i-- {
		if data[i] == ')' {
			return i+2 < len(data) && data[i+2] != 'Z' && data[i+2] != 'X'
		}
	}
	return false
}

func stateFromAPI(s *api.ContainerState) State {
	return State{
		ID:         s.Id,
		Status:     s.Status,
		Pid:        int(s.Pid),
		ExitCode:   s.ExitCode,
		CreatedAt:  fromUnixNano(s.CreatedAt),
		StartedAt:  fromUnixNano(s.StartedAt),
		FinishedAt: fromUnixNano(s.FinishedAt),
		OOMKilled:  s.OomKilled,
		Reason:     s.Reason,
		Message:    s.Message,
	}
}

func stateToAPI(s State) *api.ContainerState {
	return &api.ContainerState{
		Id:         s.ID,
		Status:     s.Status,
		Pid:        int64(s.Pid),
		ExitCode:   s.ExitCode,
		CreatedAt:  toUnixNano(s.CreatedAt),
		StartedAt:  toUnixNano(s.StartedAt),
		FinishedAt: toUnixNano(s.FinishedAt),
		OomKilled:  s.OOMKilled,
		Reason:     s.Reason,
		Message:    s.Message,
	}
}

func toUnixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// Checkpoint dumps a running container with CRIU into req.ImagesDir.
func (c *Client) Checkpoint(ctx context.Context, req CheckpointRequest) error {
	_, err := c.svc.Checkpoint(ctx, &api.CheckpointRequest{
		Id: req.ID, ImagesDir: req.ImagesDir, WorkDir: req.WorkDir, Stop: req.Stop,
	})
	return fromStatus("checkpoint "+req.ID, err)
}
