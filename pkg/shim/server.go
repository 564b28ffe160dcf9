package shim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"sync"
	"syscall"

	"github.com/containerd/errdefs"
	"github.com/containerd/ttrpc"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/berth-runtime/berth/pkg/shim/api"
)

// Backend is what the server drives: cmd/shim implements it with pkg/runtime.
type Backend interface {
	Create(req CreateRequest) (int, error)
	Start(id string) error
	Kill(id string, sig syscall.Signal, all bool) error
	Wait(ctx context.Context, id string) (State, error)
	State(id string) (State, error)
	List() []State
	Update(id string, res *specs.LinuxResources) error
	ReopenLog(id string) error
	Delete(ctx context.Context, id string) error
	StartPodInit(req PodInitRequest) (int, error)
	// Close deletes stopped containers and releases the pod init; it fails
	// with errdefs.ErrFailedPrecondition while a container runs.
	Close(ctx context.Context) error
	// Exec runs a process in a running container and returns once it has
	// exited and its output is drained; ctx done kills the process tree.
	// A timeout returns the result with an error wrapping
	// context.DeadlineExceeded.
	Exec(ctx context.Context, id string, opts ExecOptions) (ExecResult, error)
	// Attach streams the main process's live output and stdin until its
	// output ends or ctx is done (which only detaches).
	Attach(ctx context.Context, id string, s Streams) error
	Stats(id string) (Stats, error)
	ExecCount() int
	// Checkpoint dumps a running container with CRIU; ctx ending returns early (CRIU
	// itself cannot be interrupted and finishes into the images directory).
	Checkpoint(ctx context.Context, req CheckpointRequest) error
}

// Server serves one shim's socket.
type Server struct {
	sandboxID string
	backend   Backend
	log       *slog.Logger

	shutdownOnce sync.Once
	shutdown     chan struct{}

	sessions sessionTable
	ioCtx    context.Context // ServeIO's; ends the running sessions
}

// NewServer wraps a backend.
func NewServer(sandboxID string, b Backend, log *slog.Logger) *Server {
	return &Server{sandboxID: sandboxID, backend: b, log: log, shutdown: make(chan struct{}),
		sessions: sessionTable{m: map[string]*session{}}}
}

// ShutdownRequested is closed once a Shutdown call succeeded.
func (s *Server) ShutdownRequested() <-chan struct{} { return s.shutdown }

// Listen creates dir/shim.sock (mode 0600) and writes dir/shim.pid. A stale
// socket is replaced; one that still answers is errdefs.ErrAlreadyExists.
func Listen(dir string) (net.Listener, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, SocketName)
	if conn, err := net.Dial("unix", sock); err == nil {
		conn.Close()
		return nil, fmt.Errorf("listen on %s: a shim is serving there: %w", sock, errdefs.ErrAlreadyExists)
	}
	if err := os.Remove(sock); err != nil && !os.IsNotExist(err) {
		return nil, fmt.Errorf("remove stale socket: %w", err)
	}
	// The umask makes the socket 0600 from birth: no window where others may connect.
	old := syscall.Umask(0o177)
	l, err := net.Listen("unix", sock)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", sock, err)
	}
	if err := os.WriteFile(filepath.Join(dir, PidName), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("write shim pid: %w", err)
	}
	return l, nil
}

// Serve answers on l until ctx is done or the listener closes.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	srv, err := ttrpc.NewServer(ttrpc.WithUnaryServerInterceptor(s.intercept))
	if err != nil {
		return err
	}
	api.RegisterShimService(srv, &service{s: s})
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	err = srv.Serve(ctx, l)
	if errors.Is(err, ttrpc.ErrServerClosed) {
		return nil
	}
	return err
}

// intercept classifies errors for the wire and logs failed calls.
func (s *Server) intercept(ctx context.Context, um ttrpc.Unmarshaler, info *ttrpc.UnaryServerInfo, m ttrpc.Method) (any, error) {
	resp, err := m(ctx, um)
	if err != nil {
		s.log.Debug("shim call failed", "method", info.FullMethod, "err", err)
	}
	return resp, toStatus(err)
}

// service adapts the generated interface to the Backend.
type service struct{ s *Server }

func (v *service) Ping(context.Context, *api.Empty) (*api.PingResponse, error) {
	return &api.PingResponse{Pid: int64(os.Getpid()), SandboxId: v.s.sandboxID}, nil
}

func (v *service) Create(_ context.Context, r *api.CreateRequest) (*api.CreateResponse, error) {
	pid, err := v.s.backend.Create(CreateRequest{
		ID: r.Id, Bundle: r.Bundle, LogPath: r.LogPath, Stdin: r.Stdin, StdinOnce: r.StdinOnce, Tty: r.Tty,
		RestoreImages: r.RestoreImages, RestoreWork: r.RestoreWork,
	})
	if err != nil {
		return nil, err
	}
	return &api.CreateResponse{Pid: int64(pid)}, nil
}

func (v *service) Start(_ context.Context, r *api.IDRequest) (*api.Empty, error) {
	return &api.Empty{}, v.s.backend.Start(r.Id)
}

func (v *service) Kill(_ context.Context, r *api.KillRequest) (*api.Empty, error) {
	if r.Signal == 0 || r.Signal > 64 {
		return nil, fmt.Errorf("signal %d: %w", r.Signal, errdefs.ErrInvalidArgument)
	}
	return &api.Empty{}, v.s.backend.Kill(r.Id, syscall.Signal(r.Signal), r.All)
}

func (v *service) Wait(ctx context.Context, r *api.IDRequest) (*api.ContainerState, error) {
	st, err := v.s.backend.Wait(ctx, r.Id)
	if err != nil {
		return nil, err
	}
	return stateToAPI(st), nil
}

func (v *service) State(_ context.Context, r *api.IDRequest) (*api.ContainerState, error) {
	st, err := v.s.backend.State(r.Id)
	if err != nil {
		return nil, err
	}
	return stateToAPI(st), nil
}

func (v *service) List(context.Context, *api.Empty) (*api.ListResponse, error) {
	var out api.ListResponse
	for _, st := range v.s.backend.List() {
		out.Containers = append(out.Containers, stateToAPI(st))
	}
	return &out, nil
}

func (v *service) Update(_ context.Context, r *api.UpdateRequest) (*api.Empty, error) {
	var res specs.LinuxResources
	if err := json.Unmarshal(r.Resources, &res); err != nil {
		return nil, fmt.Errorf("decode resources: %w: %w", err, errdefs.ErrInvalidArgument)
	}
	return &api.Empty{}, v.s.backend.Update(r.Id, &res)
}

func (v *service) ReopenLog(_ context.Context, r *api.IDRequest) (*api.Empty, error) {
	return &api.Empty{}, v.s.backend.ReopenLog(r.Id)
}

func (v *service) Delete(ctx context.Context, r *api.IDRequest) (*api.Empty, error) {
	return &api.Empty{}, v.s.backend.Delete(ctx, r.Id)
}

func (v *service) StartPodInit(_ context.Context, r *api.PodInitRequest) (*api.PodInitResponse, error) {
	req := PodInitRequest{NetNS: r.NetNs, IPCNS: r.IpcNs, UTSNS: r.UtsNs, CgroupPath: r.CgroupPath, UserNS: r.UserNs}
	if len(r.Seccomp) > 0 {
		req.Seccomp = &specs.LinuxSeccomp{}
		if err := json.Unmarshal(r.Seccomp, req.Seccomp); err != nil {
			return nil, fmt.Errorf("decode pod seccomp filter: %v: %w", err, errdefs.ErrInvalidArgument)
		}
	}
	pid, err := v.s.backend.StartPodInit(req)
	if err != nil {
		return nil, err
	}
	return &api.PodInitResponse{Pid: int64(pid)}, nil
}

func (v *service) Shutdown(ctx context.Context, _ *api.Empty) (*api.Empty, error) {
	if err := v.s.backend.Close(ctx); err != nil {
		return nil, err
	}
	v.s.shutdownOnce.Do(func() { close(v.s.shutdown) })
	return &api.Empty{}, nil
}

func (v *service) OpenSession(_ context.Context, r *api.SessionRequest) (*api.SessionResponse, error) {
	token, err := v.s.openSession(r)
	if err != nil {
		return nil, err
	}
	return &api.SessionResponse{Session: token}, nil
}

func (v *service) Stats(_ context.Context, r *api.IDRequest) (*api.ContainerStats, error) {
	st, err := v.s.backend.Stats(r.Id)
	if err != nil {
		return nil, err
	}
	return &api.ContainerStats{
		Timestamp:             toUnixNano(st.Timestamp),
		CpuUsageNs:            st.CPUUsageNanos,
		MemoryUsageBytes:      st.MemoryUsageBytes,
		MemoryWorkingSetBytes: st.MemoryWorkingSetBytes,
		MemoryRssBytes:        st.MemoryRSSBytes,
		MemoryLimitBytes:      st.MemoryLimitBytes,
		PageFaults:            st.PageFaults,
		MajorPageFaults:       st.MajorPageFaults,
		SwapUsageBytes:        st.SwapUsageBytes,
		PidsCurrent:           st.PidsCurrent,
		PidsLimit:             st.PidsLimit,
	}, nil
}

func (v *service) Debug(context.Context, *api.Empty) (*api.DebugResponse, error) {
	// Files nothing references any more (libcontainer's pipes of a finished exec) are closed
	// by their finalizers, which run only after a collection: collect first, so the counts
	// are what the shim still holds, not what the garbage collector has yet to visit.
	goruntime.GC()
	return &api.DebugResponse{
		Sessions:   int64(v.s.sessions.len()),
		Goroutines: int64(goruntime.NumGoroutine()),
		Fds:        int64(countFDs()),
		Execs:      int64(v.s.backend.ExecCount()),
	}, nil
}

func (v *service) Checkpoint(ctx context.Context, r *api.CheckpointRequest) (*api.Empty, error) {
	return &api.Empty{}, v.s.backend.Checkpoint(ctx, CheckpointRequest{
		ID: r.Id, ImagesDir: r.ImagesDir, WorkDir: r.WorkDir, Stop: r.Stop,
	})
}
