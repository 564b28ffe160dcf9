package store

import (
	"fmt"
	"time"

	"github.com/containerd/errdefs"
)

// ContainerState is the lifecycle state of a container.
//
//	CreateContainer -> CREATED --StartContainer--> RUNNING --exit/StopContainer--> EXITED
//	                      |                                                          |
//	                      +------------------ (never started, stopped) --------------+
//	                                                                                 |
//	                   UNKNOWN (shim unreachable after a restart) --Stop/Remove------+
//	                                                                                 v
//	                                                                  RemoveContainer: deleted
//
// Removing is set before teardown starts; Start refuses a removing container.
type ContainerState string

// Container states.
const (
	ContainerCreated ContainerState = "created"
	ContainerRunning ContainerState = "running"
	ContainerExited  ContainerState = "exited"
	ContainerUnknown ContainerState = "unknown"
)

// Exit reasons reported in ContainerStatus.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
)

// User is the identity the container process runs as.
type User struct {
	UID                uint32   `json:"uid"`
	GID                uint32   `json:"gid"`
	SupplementalGroups []uint32 `json:"supplementalGroups,omitempty"`
	Username           string   `json:"username,omitempty"`
}

// ContainerMetadata is fixed when the container is created.
type ContainerMetadata struct {
	ID        string          `json:"id"`
	Name      string          `json:"name"` // reserved name <name>_<sandbox>_<namespace>_<uid>_<attempt>
	SandboxID string          `json:"sandboxID"`
	Config    ContainerConfig `json:"config"`
	CreatedAt time.Time       `json:"createdAt"`

	ImageName string `json:"imageName"` // as the user gave it
	ImageID   string `json:"imageID"`
	// StopSignal comes from the image config; "" means SIGTERM.
	StopSignal string `json:"stopSignal,omitempty"`

	Bundle   string `json:"bundle"`   // <state>/containers/<id>, holds config.json
	Rootfs   string `json:"rootfs"`   // overlay mountpoint
	LayerDir string `json:"layerDir"` // <root>/containers/<id>: upper and work
	LogPath  string `json:"logPath,omitempty"`
	Cgroup   string `json:"cgroup,omitempty"`
	// Volumes are the anonymous volumes made for the image's declared volumes: host
	// directory (<root>/containers/<id>/volumes/<n>) by container path.
	Volumes map[string]string `json:"volumes,omitempty"`
	User    User              `json:"user"`
	// NotHonoured lists what the node could not give the container as asked (a negative
	// oom_score_adj without CAP_SYS_RESOURCE, ...), reported in ContainerStatus.
	NotHonoured []string `json:"notHonoured,omitempty"`
}

// ContainerStatus changes over the container's life.
type ContainerStatus struct {
	State      ContainerState `json:"state"`
	Pid        int            `json:"pid,omitempty"`
	StartedAt  time.Time      `json:"startedAt,omitzero"`
	FinishedAt time.Time      `json:"finishedAt,omitzero"`
	ExitCode   int32          `json:"exitCode"`
	Reason     string         `json:"reason,omitempty"`
	Message    string         `json:"message,omitempty"`
	Resources  Resources      `json:"resources"`
	Removing   bool           `json:"removing,omitempty"`
	Starting   bool           `json:"starting,omitempty"`
}

// Exited records an exit, once: a second exit report (Wait returning after recovery already
// saw the exit) keeps the first.
func (s *ContainerStatus) Exited(code int32, at time.Time, oom bool, message string) {
	if s.State == ContainerExited {
		return
	}
	s.State = ContainerExited
	s.Pid = 0
	s.ExitCode = code
	if at.IsZero() {
		at = time.Now()
	}
	s.FinishedAt = at
	s.Message = message
	switch {
	case oom:
		s.Reason = ReasonOOMKilled
	case code == 0:
		s.Reason = ReasonCompleted
	default:
		s.Reason = ReasonError
	}
}

// CanStart reports why the container cannot start, or nil.
func (s *ContainerStatus) CanStart() error {
	switch {
	case s.Removing:
		return fmt.Errorf("container is being removed: %w", errdefs.ErrFailedPrecondition)
	case s.Starting:
		return fmt.Errorf("container is already starting: %w", errdefs.ErrFailedPrecondition)
	case s.State != ContainerCreated:
		return fmt.Errorf("container is %s, not created: %w", s.State, errdefs.ErrFailedPrecondition)
	}
	return nil
}

// Container is a stored container.
type Container = Record[ContainerMetadata, ContainerStatus]
