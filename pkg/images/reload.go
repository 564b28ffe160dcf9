package images

import (
	"fmt"
	"slices"
)

// Reloadable are the settings that take effect without restarting the agent (SIGHUP).
// The hosts.toml files below CertsDir need no reload at all: every pull reads them afresh.
type Reloadable struct {
	CertsDir           string
	InsecureRegistries []string
	Pinned             []string
}

// liveSettings are the Reloadable settings in effect; replaced whole, never changed.
type liveSettings struct {
	certsDir string
	insecure []string
	pinned   pinSet
}

func newLiveSettings(r Reloadable) (*liveSettings, error) {
	pinned, err := newPinSet(r.Pinned)
	if err != nil {
		return nil, err
	}
	return &liveSettings{certsDir: r.CertsDir, insecure: slices.Clone(r.InsecureRegistries), pinned: pinned}, nil
}

// Reload switches to new registry settings and pinned images. Pulls under way finish with
// the settings they started with. A malformed pinned name fails the reload and changes nothing.
func (s *Service) Reload(r Reloadable) error {
	live, err := newLiveSettings(r)
	if err != nil {
		return fmt.Errorf("images: reload: %w", err)
	}
	s.live.Store(live)
	return nil
}
