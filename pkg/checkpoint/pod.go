package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/containerd/errdefs"
)

// A pod checkpoint is a directory (the CRI's CheckpointPod output_path) holding:
//
//	pod.json               PodManifest: the pod's config and its containers
//	containers/<name>.tar  one container archive per container, in the layout above
//
// The manifest is written last: a directory without one is no pod checkpoint.
const (
	PodManifestFile  = "pod.json"
	PodContainersDir = "containers"
)

// PodVersion of pod.json; a reader refuses newer ones.
const PodVersion = 1

// PodManifest is pod.json.
type PodManifest struct {
	Version   int    `json:"berthPodVersion"`
	SandboxID string `json:"sandboxID"`
	// RuntimeHandler is the pod's CRI runtime handler ("" = the default).
	RuntimeHandler string `json:"runtimeHandler,omitempty"`
	// PodConfig is the pod's CRI PodSandboxConfig as protobuf JSON (pkg/cri encodes it:
	// this package takes no CRI types).
	PodConfig      json.RawMessage `json:"podConfig,omitempty"`
	CheckpointedAt time.Time       `json:"checkpointedTime"`
	Containers     []PodContainer  `json:"containers"`
}

// PodContainer is one container of a pod checkpoint.
type PodContainer struct {
	// Name is the container's CRI metadata name, unique in the pod; RestorePod matches
	// the request's container configs by it.
	Name string `json:"name"`
	ID   string `json:"id"`
	// Archive is the container archive's path relative to the checkpoint directory.
	Archive string `json:"archive"`
	// ImageName and ImageRef are the base image (as in the archive's config.dump); Args
	// the checkpointed process's command line. A restore checks the request against them.
	ImageName string   `json:"rootfsImageName,omitempty"`
	ImageRef  string   `json:"rootfsImageRef,omitempty"`
	Args      []string `json:"args,omitempty"`
}

// containerNameRE is what a CRI container name must look like to name a file: the
// kubelet's names are DNS labels.
var containerNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,252}$`)

// ContainerArchive is the relative path of a container's archive in a pod checkpoint; a name
// that cannot be a file name is InvalidArgument.
func ContainerArchive(name string) (string, error) {
	if !containerNameRE.MatchString(name) {
		return "", fmt.Errorf("container name %q cannot name a file in a pod checkpoint: %w", name, errdefs.ErrInvalidArgument)
	}
	return filepath.Join(PodContainersDir, name+".tar"), nil
}

// WritePodManifest writes pod.json into dir through a temporary file renamed into place.
func WritePodManifest(dir string, m PodManifest) error {
	m.Version = PodVersion
	data, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return fmt.Errorf("encode %s: %w", PodManifestFile, err)
	}
	tmp, err := os.CreateTemp(dir, "."+PodManifestFile+".partial-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", PodManifestFile, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", PodManifestFile, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", PodManifestFile, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", PodManifestFile, err)
	}
	return os.Rename(tmp.Name(), filepath.Join(dir, PodManifestFile))
}

// LoadPod reads and checks the manifest of the pod checkpoint in dir: every container has a
// unique name and its archive is there. A directory that is no pod checkpoint is
// InvalidArgument, a missing one NotFound.
func LoadPod(dir string) (PodManifest, error) {
	var m PodManifest
	if !filepath.IsAbs(dir) {
		return m, fmt.Errorf("pod checkpoint %q: not an absolute path: %w", dir, errdefs.ErrInvalidArgument)
	}
	data, err := os.ReadFile(filepath.Join(dir, PodManifestFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, serr := os.Stat(dir); serr != nil {
			return m, fmt.Errorf("pod checkpoint %q: %w", dir, errdefs.ErrNotFound)
		}
		return m, fmt.Errorf("%q is not a pod checkpoint (no %s): %w", dir, PodManifestFile, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return m, fmt.Errorf("read pod checkpoint %q: %w", dir, err)
	}
	if err := json.Unmarshal(data, &m); err != nil {
		return m, fmt.Errorf("decode %s of %q: %w: %w", PodManifestFile, dir, err, errdefs.ErrInvalidArgument)
	}
	if m.Version > PodVersion {
		return m, fmt.Errorf("pod checkpoint %q: version %d is newer than %d: %w", dir, m.Version, PodVersion, errdefs.ErrInvalidArgument)
	}
	if err := m.check(dir); err != nil {
		return m, fmt.Errorf("pod checkpoint %q: %w", dir, err)
	}
	return m, nil
}

func (m PodManifest) check(dir string) error {
	if len(m.Containers) == 0 {
		return fmt.Errorf("no containers: %w", errdefs.ErrInvalidArgument)
	}
	seen := map[string]bool{}
	for _, c := range m.Containers {
		want, err := ContainerArchive(c.Name)
		if err != nil {
			return err
		}
		if seen[c.Name] {
			return fmt.Errorf("container %q twice: %w", c.Name, errdefs.ErrInvalidArgument)
		}
		seen[c.Name] = true
		if c.Archive != want {
			return fmt.Errorf("container %q: archive %q is not %q: %w", c.Name, c.Archive, want, errdefs.ErrInvalidArgument)
		}
		if _, err := os.Stat(filepath.Join(dir, c.Archive)); err != nil {
			return fmt.Errorf("container %q: archive %s: %w: %w", c.Name, c.Archive, err, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// ArchivePath is the absolute path of c's archive in the checkpoint directory dir.
func (c PodContainer) ArchivePath(dir string) string { return filepath.Join(dir, c.Archive) }

// CheckPodDir fails unless dir is an absolute path of an existing, empty, writable
// directory, as the CRI's CheckpointPod requires of output_path; callers check before
// anything is frozen.
func CheckPodDir(dir string) error {
	if dir == "" || !filepath.IsAbs(dir) {
		return fmt.Errorf("output path %q: not an absolute path: %w", dir, errdefs.ErrInvalidArgument)
	}
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("output path %q does not exist: %w", dir, errdefs.ErrInvalidArgument)
	}
	if err != nil {
		return fmt.Errorf("output path %q: %w: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	if len(ents) != 0 {
		return fmt.Errorf("output path %q is not empty (%d entries): %w", dir, len(ents), errdefs.ErrInvalidArgument)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("output path %q is not writable: %w: %w", dir, err, errdefs.ErrInvalidArgument)
	}
	f.Close()
	return os.Remove(f.Name())
}
