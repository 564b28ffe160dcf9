package server

import (
	"bufio"
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// Stats collection: one cache serves every stats and metrics RPC, so that a kubelet asking
// for container stats, pod stats and metrics in one housekeeping pass reads each cgroup once.
// Cgroups are read directly (no shim round trip); writable layers are walked at most once
// per period because a walk costs a syscall per file.

const (
	// defaultStatsPeriod is how often the cache refreshes in the background; it also bounds
	// how often a writable layer is walked.
	defaultStatsPeriod = 10 * time.Second
	// statsMaxAge is how stale a cached sample may be when an RPC reads it; older data is
	// refreshed on demand.
	statsMaxAge = time.Second
)

// statsSources reads the kernel; tests replace them.
type statsSources struct {
	cgroup func(path string) (*cgroups.Stats, error)
	// network lists the interface counters of the netns pinned at path.
	network func(netnsPath string) ([]ifaceStats, error)
	layer   func(dir string) (layerUsage, error)
}

// ifaceStats are the counters of one network interface (/proc/net/dev).
type ifaceStats struct {
	Name                                  string
	RxBytes, RxPackets, RxErrors, RxDrops uint64
	TxBytes, TxPackets, TxErrors, TxDrops uint64
}

// layerUsage is the disk use of a writable layer and, when HasFs, the size and inodes of the
// filesystem holding it (what the layer could grow to).
type layerUsage struct {
	Bytes, Inodes                  uint64
	Limit, InodesTotal, InodesFree uint64
	HasFs                          bool
	At                             time.Time
}

// cgSample is a cgroup sample with the CPU rate since the previous one.
type cgSample struct {
	cgroups.Stats
	// NanoCores is the CPU rate over the window to the previous sample; HasRate is false
	// for a first sample.
	NanoCores uint64
	HasRate   bool
}

type containerSample struct {
	ID, SandboxID string
	Running       bool      // the container's state when sampled
	CG            *cgSample // nil when the container has no live cgroup
	Layer         layerUsage
	HasLayer      bool
}

type podSample struct {
	ID    string
	CG    *cgSample
	Net   []ifaceStats
	NetAt time.Time
}

// statsSnapshot is immutable once published.
type statsSnapshot struct {
	At         time.Time
	Containers map[string]*containerSample
	Pods       map[string]*podSample
}

// statsCollector owns the cache.
type statsCollector struct {
	st      *store.Store
	src     statsSources
	period  time.Duration
	maxAge  time.Duration
	now     func() time.Time
	refresh sync.Mutex // one refresh at a time; callers that waited reuse its result

	mu   sync.Mutex
	snap *statsSnapshot
}

func newStatsCollector(st *store.Store, src statsSources, period time.Duration) *statsCollector {
	if period <= 0 {
		period = defaultStatsPeriod
	}
	return &statsCollector{st: st, src: src, period: period, maxAge: statsMaxAge, now: time.Now}
}

// run refreshes every period until stop closes.
func (c *statsCollector) run(stop <-chan struct{}) {
	t := time.NewTicker(c.period)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			c.get(0)
		}
	}
}

// get returns a snapshot no older than maxAge (0: always a new one) that covers the store:
// a pod or container created, or a container started, since the last snapshot must not be
// missing from stats asked for right after (critest lists metrics right after a start).
func (c *statsCollector) get(maxAge time.Duration) *statsSnapshot {
	if s := c.current(); c.usable(s, maxAge) {
		return s
	}
	c.refresh.Lock()
	defer c.refresh.Unlock()
	// Another caller may have refreshed while this one waited.
	if s := c.current(); c.usable(s, maxAge) {
		return s
	}
	s := c.collect(c.current())
	c.mu.Lock()
	c.snap = s
	c.mu.Unlock()
	return s
}

func (c *statsCollector) usable(s *statsSnapshot, maxAge time.Duration) bool {
	return s != nil && maxAge > 0 && c.now().Sub(s.At) <= maxAge && c.covers(s)
}

// covers reports whether s has a sample of every pod and container in the store, taken
// while each container was in its current running state.
func (c *statsCollector) covers(s *statsSnapshot) bool {
	for _, sb := range c.st.Sandboxes.List() {
		if s.Pods[sb.ID()] == nil {
			return false
		}
	}
	for _, ctr := range c.st.Containers.List() {
		cs := s.Containers[ctr.ID()]
		if cs == nil || cs.Running != (ctr.Status().State == store.ContainerRunning) {
			return false
		}
	}
	return true
}

// fresh is the snapshot the RPCs read.
func (c *statsCollector) fresh() *statsSnapshot { return c.get(c.maxAge) }

func (c *statsCollector) current() *statsSnapshot {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.snap
}

func (c *statsCollector) collect(prev *statsSnapshot) *statsSnapshot {
	if prev == nil {
		prev = &statsSnapshot{}
	}
	next := &statsSnapshot{At: c.now(), Containers: map[string]*containerSample{}, Pods: map[string]*podSample{}}
	for _, sb := range c.st.Sandboxes.List() {
		md, st := sb.Metadata(), sb.Status()
		p := &podSample{ID: md.ID}
		if md.CgroupParent != "" {
			p.CG = c.sampleCgroup(md.CgroupParent, prevPodCG(prev, md.ID))
		}
		if md.NetNS != "" && st.State == store.SandboxReady && c.src.network != nil {
			if ifs, err := c.src.network(md.NetNS); err == nil {
				p.Net, p.NetAt = ifs, c.now()
			}
		}
		next.Pods[md.ID] = p
	}
	for _, ctr := range c.st.Containers.List() {
		md, st := ctr.Metadata(), ctr.Status()
		s := &containerSample{ID: md.ID, SandboxID: md.SandboxID, Running: st.State == store.ContainerRunning}
		var old *containerSample
		if prev.Containers != nil {
			old = prev.Containers[md.ID]
		}
		if st.State == store.ContainerRunning && md.Cgroup != "" {
			var oldCG *cgSample
			if old != nil {
				oldCG = old.CG
			}
			s.CG = c.sampleCgroup(md.Cgroup, oldCG)
		}
		s.Layer, s.HasLayer = c.sampleLayer(md, old)
		next.Containers[md.ID] = s
	}
	return next
}

func prevPodCG(prev *statsSnapshot, id string) *cgSample {
	if p := prev.Pods[id]; p != nil {
		return p.CG
	}
	return nil
}

func (c *statsCollector) sampleCgroup(path string, prev *cgSample) *cgSample {
	raw, err := c.src.cgroup(path)
	if err != nil || raw == nil {
		return nil
	}
	s := &cgSample{Stats: *raw}
	if prev != nil && raw.Timestamp.After(prev.Timestamp) && raw.CPUUsageNanos >= prev.CPUUsageNanos {
		window := raw.Timestamp.Sub(prev.Timestamp)
		s.NanoCores = uint64(float64(raw.CPUUsageNanos-prev.CPUUsageNanos) / window.Seconds())
		s.HasRate = true
	}
	return s
}

// sampleLayer reuses the previous walk until it is a period old.
func (c *statsCollector) sampleLayer(md store.ContainerMetadata, old *containerSample) (layerUsage, bool) {
	if md.LayerDir == "" || c.src.layer == nil {
		return layerUsage{}, false
	}
	if old != nil && old.HasLayer && c.now().Sub(old.Layer.At) < c.period {
		return old.Layer, true
	}
	u, err := c.src.layer(filepath.Join(md.LayerDir, "upper"))
	if err != nil {
		return layerUsage{}, false
	}
	u.At = c.now()
	return u, true
}

// walkLayer sums the allocated bytes (as du does: what the kubelet evicts on) and counts the
// inodes of a directory tree, counting hard-linked files once.
func walkLayer(dir string) (layerUsage, error) {
	var u layerUsage
	seen := map[uint64]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p != dir && os.IsNotExist(err) {
				return nil // removed while walking
			}
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
			u.Bytes += uint64(st.Blocks) * 512
		}
		u.Inodes++
		return nil
	})
	if err != nil {
		return u, err
	}
	var fs syscall.Statfs_t
	if syscall.Statfs(dir, &fs) == nil {
		u.Limit = fs.Blocks * uint64(fs.Bsize)
		u.InodesTotal, u.InodesFree, u.HasFs = fs.Files, fs.Ffree, true
	}
	return u, nil
}

// readNetDev parses /proc/net/dev as seen from the calling thread's network namespace.
func readNetDev(path string) ([]ifaceStats, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseNetDev(b), nil
}

// parseNetDev reads the two header lines and then "name: rx(8 fields) tx(8 fields)". The
// loopback interface is left out: pod traffic to itself is not network usage.
func parseNetDev(b []byte) []ifaceStats {
	var out []ifaceStats
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		name = strings.TrimSpace(name)
		f := strings.Fields(rest)
		if name == "lo" || len(f) < 16 {
			continue
		}
		n := make([]uint64, 16)
		for i := range n {
			n[i], _ = strconv.ParseUint(f[i], 10, 64)
		}
		out = append(out, ifaceStats{
			Name: name, RxBytes: n[0], RxPackets: n[1], RxErrors: n[2], RxDrops: n[3],
			TxBytes: n[8], TxPackets: n[9], TxErrors: n[10], TxDrops: n[11],
		})
	}
	return out
}

// defaultInterface is the pod's primary interface: eth0 as CNI names it, else the first.
func defaultInterface(ifs []ifaceStats) (ifaceStats, []ifaceStats, bool) {
	for i, f := range ifs {
		if f.Name == "eth0" {
			rest := append(append([]ifaceStats{}, ifs[:i]...), ifs[i+1:]...)
			return f, rest, true
		}
	}
	if len(ifs) == 0 {
		return ifaceStats{}, nil, false
	}
	return ifs[0], ifs[1:], true
}
