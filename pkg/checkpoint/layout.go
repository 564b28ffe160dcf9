package checkpoint

import (
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Names inside an archive; the same as CRI-O's and Podman's (checkpointctl reads them).
const (
	ImagesDir        = "checkpoint"
	ConfigDumpFile   = "config.dump"
	SpecDumpFile     = "spec.dump"
	StatusDumpFile   = "status.dump"
	RootfsDiffFile   = "rootfs-diff.tar"
	DeletedFilesFile = "deleted.files"
)

// ImageAnnotation marks an OCI image as a checkpoint image: a manifest annotation whose
// value is the checkpointed container's name (CRI-O's key; buildah's `config --annotation`
// and hack/testimage's checkpoint command write it). Its layer holds an archive's files.
const ImageAnnotation = "io.kubernetes.cri-o.annotations.checkpoint.name"

// Version of berth's metadata in config.dump; a reader refuses newer ones.
const Version = 1

// Config is config.dump. The first fields carry the JSON names CRI-O and Podman use
// (checkpointctl shows them); the rest are berth's, needed to restore the container
// into another pod.
type Config struct {
	ID              string    `json:"id"`
	Name            string    `json:"name"`
	RootfsImageName string    `json:"rootfsImageName,omitempty"`
	RootfsImageRef  string    `json:"rootfsImageRef,omitempty"`
	OCIRuntime      string    `json:"runtime,omitempty"`
	CreatedTime     time.Time `json:"createdTime"`
	CheckpointedAt  time.Time `json:"checkpointedTime"`

	Version     int               `json:"berthVersion"`
	SandboxID   string            `json:"sandboxID,omitempty"`
	Attempt     uint32            `json:"attempt,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
	// LogPath is the container's CRI log path relative to its pod's log directory.
	LogPath string `json:"logPath,omitempty"`
	Stdin   bool   `json:"stdin,omitempty"`
}

// Status is status.dump: what the container was doing when it was checkpointed.
type Status struct {
	State     string    `json:"state"`
	Pid       int       `json:"pid"`
	StartedAt time.Time `json:"startedAt"`
}

// Contents is what goes into an archive, or what an extracted one holds.
type Contents struct {
	Config Config
	Spec   *specs.Spec
	Status Status
	// ImagesDir holds CRIU's images (written as checkpoint/).
	ImagesDir string
	// UpperDir is the writable overlay layer: its files become rootfs-diff.tar and its
	// whiteouts deleted.files. "" writes neither.
	UpperDir string
}
