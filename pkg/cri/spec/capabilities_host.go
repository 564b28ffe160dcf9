package spec

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// CurrentCapabilities returns the effective capabilities of the calling process (the agent),
// for Options.HostCapabilities.
func CurrentCapabilities() ([]string, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("read own capabilities: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return nil, fmt.Errorf("parse CapEff %q: %w", v, err)
		}
		return capsFromMask(mask), nil
	}
	return nil, fmt.Errorf("no CapEff in /proc/self/status")
}

// capsFromMask names the bits of a capability mask; bits beyond the known capabilities are
// dropped (runc could not name them either).
func capsFromMask(mask uint64) []string {
	caps := []string{}
	for i, c := range allCapabilities {
		if mask&(1<<uint(i)) != 0 {
			caps = append(caps, c)
		}
	}
	return caps
}
