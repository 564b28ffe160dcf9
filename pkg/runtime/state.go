package runtime

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Container statuses, as the CRI names them (lowercase).
//
//	created --Start--> running --init exits--> stopped --Delete--> (gone)
//	created --init killed/dies--> stopped
//
// "unknown" is used only for records of a previous shim whose exit the
// current shim cannot observe.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusStopped = "stopped"
	StatusUnknown = "unknown"
)

// Exit reasons reported to the kubelet.
const (
	ReasonCompleted = "Completed"
	ReasonError     = "Error"
	ReasonOOMKilled = "OOMKilled"
	ReasonUnknown   = "Unknown"
)

// Status is what the shim knows about one container; it is persisted as JSON
// so that the exit code survives a shim restart.
type Status struct {
	ID         string    `json:"id"`
	Status     string    `json:"status"`
	Pid        int       `json:"pid"`
	ExitCode   int32     `json:"exitCode"`
	CreatedAt  time.Time `json:"createdAt"`
	StartedAt  time.Time `json:"startedAt"`
	FinishedAt time.Time `json:"finishedAt"`
	OOMKilled  bool      `json:"oomKilled"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	// Create parameters, kept so that a restarted shim knows the container.
	Bundle  string `json:"bundle"`
	LogPath string `json:"logPath"`
}

// recordStore persists one JSON file per container: write to a temp file,
// fsync, rename, so a crash leaves the old or the new record, never half.
type recordStore struct{ dir string }

func (s recordStore) path(id string) string { return filepath.Join(s.dir, id+".json") }

func (s recordStore) save(st Status) error {
	data, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state of %q: %w", st.ID, err)
	}
	tmp, err := os.CreateTemp(s.dir, "."+st.ID+".*")
	if err != nil {
		return fmt.Errorf("save state of %q: %w", st.ID, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("save state of %q: %w", st.ID, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("sync state of %q: %w", st.ID, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save state of %q: %w", st.ID, err)
	}
	if err := os.Rename(tmp.Name(), s.path(st.ID)); err != nil {
		return fmt.Errorf("save state of %q: %w", st.ID, err)
	}
	return nil
}

func (s recordStore) remove(id string) error {
	if err := os.Remove(s.path(id)); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("remove state of %q: %w", id, err)
	}
	return nil
}

func (s recordStore) loadAll() ([]Status, error) {
	matches, err := filepath.Glob(filepath.Join(s.dir, "*.json"))
	if err != nil {
		return nil, err
	}
	var out []Status
	for _, m := range matches {
		data, err := os.ReadFile(m)
		if err != nil {
			return nil, fmt.Errorf("load state %s: %w", m, err)
		}
		var st Status
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, fmt.Errorf("decode state %s: %w", m, err)
		}
		out = append(out, st)
	}
	return out, nil
}
