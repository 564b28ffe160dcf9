// Package shim is the protocol between the agent and a pod's berth-shim:
// Start/Connect and Client for the agent, Server for cmd/shim, over ttrpc.
//
// The package does not import libcontainer: the server drives a Backend,
// which cmd/shim implements with pkg/runtime.
package shim

import (
	"io"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// File names inside a shim's directory.
const (
	SocketName = "shim.sock"
	// IOSocketName is where exec and attach sessions connect their streams.
	IOSocketName = "io.sock"
	PidName      = "shim.pid"
	LogName      = "shim.log"
)

// Container statuses reported in State.Status.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusStopped = "stopped"
	StatusUnknown = "unknown"
)

// StartOptions tell Start which shim to spawn.
type StartOptions struct {
	Binary      string // path of berth-shim
	SandboxID   string
	Dir         string // <state>/shims/<sandbox-id>
	RuntimeRoot string // <state>/runc
	// CgroupDriver is the agent's ("" = cgroupfs). Under "systemd" the shim moves itself into
	// a scope of its own and asks systemd for its containers' and pod init's scopes.
	CgroupDriver string
	// OCIRuntime is the external OCI runtime binary of the pod's runtime handler; "" runs
	// the containers with libcontainer in the shim.
	OCIRuntime string
	// OCIShimCgroups: the shim, not OCIRuntime, manages the containers' cgroups.
	OCIShimCgroups bool
}

// CreateRequest describes a container for Create.
type CreateRequest struct {
	ID                    string
	Bundle                string // dir holding config.json (OCI runtime spec) and rootfs/
	LogPath               string // CRI log file ("" = discard)
	Stdin, StdinOnce, Tty bool
	// RestoreImages, when set, creates the container for a CRIU restore from the images
	// in that directory: Start restores the checkpointed processes instead of exec'ing.
	// RestoreWork receives CRIU's restore files.
	RestoreImages, RestoreWork string
}

// CheckpointRequest asks for a CRIU dump of a running container.
type CheckpointRequest struct {
	ID        string
	ImagesDir string // receives CRIU's images and dump.log
	WorkDir   string // CRIU's other files
	Stop      bool   // end the container after the dump (default: keep it running)
}

// PodInitRequest describes the pod's shared-PID-namespace init.
type PodInitRequest struct {
	NetNS, IPCNS, UTSNS string // paths of pinned namespaces to join ("" = host)
	CgroupPath          string // cgroup (relative to the hierarchy roots) to put the init in
	// UserNS is the pod's pinned user namespace ("" = host). The init joins it and then makes
	// its pid namespace, so that the pid namespace belongs to the pod's user namespace.
	UserNS string
	// Seccomp is the pod's seccomp filter, applied to the init before it waits; nil = none.
	Seccomp *specs.LinuxSeccomp
}

// State is a container as the shim sees it.
type State struct {
	ID                               string
	Status                           string // StatusCreated, StatusRunning, StatusStopped, StatusUnknown
	Pid                              int
	ExitCode                         int32
	CreatedAt, StartedAt, FinishedAt time.Time
	OOMKilled                        bool
	Reason, Message                  string
}

// TermSize is a terminal's size in characters.
type TermSize struct{ Width, Height uint16 }

// Streams are one session's byte streams; nil ones are not connected.
type Streams struct {
	// Stdin feeds the process; its EOF closes the process's stdin (not a
	// tty's). Exec and Attach return without waiting for a blocked
	// Stdin.Read: the caller ends it by closing its source.
	Stdin io.Reader
	// Stdout and Stderr receive output until the session ends; with a tty
	// everything is on Stdout. A failing writer aborts the session.
	Stdout, Stderr io.Writer
	// Resize carries tty size changes; nil for none.
	Resize <-chan TermSize
}

// ExecOptions describe a process to run in a running container, with the
// container's user, env, cwd, capabilities and no_new_privs.
type ExecOptions struct {
	Cmd     []string
	Tty     bool
	Size    TermSize      // initial tty size
	Timeout time.Duration // kill the process tree after this long; 0 = none
	Streams
}

// ExecResult is how an exec'd process ended.
type ExecResult struct {
	ExitCode int32 // 128+signal when killed
	TimedOut bool
}

// ExecSyncResult is the captured output of ExecSync and how much of each
// stream did not fit in it.
type ExecSyncResult struct {
	Stdout, Stderr               []byte
	ExitCode                     int32
	StdoutDropped, StderrDropped int64 // bytes beyond ExecSync's maxOutput
}

// Stats is a container's cgroup usage at one instant.
type Stats struct {
	Timestamp             time.Time
	CPUUsageNanos         uint64 // cumulative
	MemoryUsageBytes      uint64
	MemoryWorkingSetBytes uint64 // usage minus inactive file cache
	MemoryRSSBytes        uint64
	MemoryLimitBytes      uint64
	PageFaults            uint64
	MajorPageFaults       uint64
	SwapUsageBytes        uint64
	PidsCurrent           uint64
	PidsLimit             uint64 // 0 = unlimited
}

// DebugInfo are shim counters tests use to find leaks.
type DebugInfo struct {
	Sessions   int // exec/attach sessions open or waiting for their streams
	Goroutines int
	FDs        int // open file descriptors of the shim
	Execs      int // exec'd processes supervised
}
