// Package shim is the protocol between the agent and a pod's berth-shim:
// Start/Connect and Client for the agent, Server for cmd/shim, over ttrpc.
//
// The package does not import libcontainer: the server drives a Backend,
// which cmd/shim implements with pkg/runtime.
package shim

import (
	"time"
)

// File names inside a shim's directory.
const (
	SocketName = "shim.sock"
	PidName    = "shim.pid"
	LogName    = "shim.log"
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
}

// CreateRequest describes a container for Create.
type CreateRequest struct {
	ID                    string
	Bundle                string // dir holding config.json (OCI runtime spec) and rootfs/
	LogPath               string // CRI log file ("" = discard)
	Stdin, StdinOnce, Tty bool
}

// PodInitRequest describes the pod's shared-PID-namespace init.
type PodInitRequest struct {
	NetNS, IPCNS, UTSNS string // paths of pinned namespaces to join ("" = host)
	CgroupPath          string // cgroup (relative to the hierarchy roots) to put the init in
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
