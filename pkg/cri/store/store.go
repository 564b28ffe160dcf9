package store

import "fmt"

// Store holds the sandbox and container tables and the resource records.
type Store struct {
	*DB
	Sandboxes  *Table[SandboxMetadata, SandboxStatus]
	Containers *Table[ContainerMetadata, ContainerStatus]
}

// New wraps an open DB. Call Load to read existing records.
func New(db *DB) *Store {
	return &Store{
		DB:         db,
		Sandboxes:  newTable[SandboxMetadata, SandboxStatus](db, bucketSandboxes, "sandbox"),
		Containers: newTable[ContainerMetadata, ContainerStatus](db, bucketContainers, "container"),
	}
}

// Load reads every persisted record into memory.
func (s *Store) Load() error {
	if err := s.Sandboxes.load(); err != nil {
		return fmt.Errorf("load cri store: %w", err)
	}
	if err := s.Containers.load(); err != nil {
		return fmt.Errorf("load cri store: %w", err)
	}
	return nil
}

// ContainersOf lists the containers of a sandbox.
func (s *Store) ContainersOf(sandboxID string) []*Container {
	var out []*Container
	for _, c := range s.Containers.List() {
		if c.Metadata().SandboxID == sandboxID {
			out = append(out, c)
		}
	}
	return out
}
