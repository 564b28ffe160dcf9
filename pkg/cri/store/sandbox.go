package store

import "time"

// SandboxState is the lifecycle state of a pod sandbox.
//
//	    RunPodSandbox
//	         |
//	         v
//	      READY ------ pod init or shim lost ------+
//	         |                                      |
//	  StopPodSandbox                                v
//	         |                                 NOTREADY
//	         v                                      |
//	     NOTREADY <---------------------------------+
//	         |
//	RemovePodSandbox (Removing set first; no container may be created after)
//	         |
//	         v
//	      deleted
//
// A sandbox record is added only once every resource of the pod exists, so a record never
// describes a half-built pod; leftovers of a crash mid-create are resources without a record.
type SandboxState string

// Sandbox states.
const (
	SandboxReady    SandboxState = "ready"
	SandboxNotReady SandboxState = "notready"
)

// SandboxMetadata is fixed when the sandbox is created.
type SandboxMetadata struct {
	ID             string    `json:"id"`
	Name           string    `json:"name"` // reserved name <name>_<namespace>_<uid>_<attempt>
	Config         PodConfig `json:"config"`
	RuntimeHandler string    `json:"runtimeHandler,omitempty"`
	CreatedAt      time.Time `json:"createdAt"`
	Hostname       string    `json:"hostname,omitempty"`

	PodDir  string `json:"podDir"`            // <state>/sandboxes/<id>
	ShimDir string `json:"shimDir"`           // <state>/shims/<id>
	ShmPath string `json:"shmPath,omitempty"` // tmpfs mount, or /dev/shm for host IPC

	// Pinned namespaces; "" means the host's.
	NetNS string `json:"netns,omitempty"`
	IPCNS string `json:"ipcns,omitempty"`
	UTSNS string `json:"utsns,omitempty"`

	CgroupParent string `json:"cgroupParent"` // cgroupfs path of the pod cgroup
}

// SandboxStatus changes over the sandbox's life.
type SandboxStatus struct {
	State SandboxState `json:"state"`
	// Pid is the pod init's host pid (pid mode POD), 0 when there is none.
	Pid      int    `json:"pid,omitempty"`
	PodIP    string `json:"podIP,omitempty"`
	Removing bool   `json:"removing,omitempty"`
	Message  string `json:"message,omitempty"`
	// Resources are the pod-level resources last applied by UpdatePodSandboxResources; nil
	// until the first update (the pod config's then describe the pod).
	Resources *PodResources `json:"resources,omitempty"`
	// ResourcesPending is set while an update is being written to the pod cgroup. Found set
	// at startup, the agent died mid-write: the cgroup is put back to Resources.
	ResourcesPending *PodResources `json:"resourcesPending,omitempty"`
}

// PodResources are the pod-level resources of an UpdatePodSandboxResources request.
type PodResources struct {
	Resources Resources `json:"resources"` // the sum of the containers' resources
	Overhead  Resources `json:"overhead"`  // the pod's own overhead
}

// Sandbox is a stored pod sandbox.
type Sandbox = Record[SandboxMetadata, SandboxStatus]
