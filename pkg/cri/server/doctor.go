package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"

	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/images"
)

// The doctor compares the ledger (cri/meta.db: records and the objects they own) with what
// the node holds for this agent's root and state directories, and reports both directions:
// objects nothing owns, and objects the ledger claims that the node lacks. With Fix it frees
// what nothing owns through release, the path rollback, removal and startup reconcile share.
// It runs on a Service built with Options.Offline while no agent holds the store.

// Problems the doctor reports.
const (
	// ProblemOrphanRecord is a ledger entry whose owner (sandbox or container) has no record:
	// what startup reconcile releases.
	ProblemOrphanRecord = "orphan-record"
	// ProblemUnowned is an object on the node that no record or ledger entry owns.
	ProblemUnowned = "unowned"
	// ProblemMissing is an object the ledger says a live record owns but the node lacks.
	ProblemMissing = "missing"
)

// Kinds of objects the doctor finds beyond the ledger's own kinds.
const (
	doctorKindIP       = "ip"       // a host-local reservation file
	doctorKindIPTables = "iptables" // iptables rules naming a sandbox
	doctorKindSnapshot = "snapshot" // an image snapshot nothing references
)

// Finding is one discrepancy.
type Finding struct {
	Problem string `json:"problem"`
	Kind    string `json:"kind"`
	Path    string `json:"path"`
	Owner   string `json:"owner,omitempty"`
	Detail  string `json:"detail,omitempty"`
	Fixed   bool   `json:"fixed,omitempty"`
	FixErr  string `json:"fixError,omitempty"`
}

// DoctorReport lists every finding.
type DoctorReport struct {
	Findings []Finding `json:"findings"`
}

// Unresolved counts the findings not fixed.
func (r DoctorReport) Unresolved() int {
	n := 0
	for _, f := range r.Findings {
		if !f.Fixed {
			n++
		}
	}
	return n
}

// ImageAuditor is what the doctor checks of the image store (*images.Service).
type ImageAuditor interface {
	Audit(ctx context.Context) (images.Audit, error)
	GC(ctx context.Context) error
}

// DoctorOptions select the checks.
type DoctorOptions struct {
	// Fix releases what nothing owns (missing objects cannot be recreated and stay reported).
	Fix bool
	// SharedNode: other agents on this node put pods under the same cgroup parent and rules
	// in the same iptables, so only cgroups and rules of ids this agent's directories name
	// are judged. Off, every pod cgroup under the default parent must be this agent's.
	SharedNode bool
	// Images is checked for leases no container holds and unreferenced snapshots; nil skips.
	Images ImageAuditor
}

// doctorRun carries one examination.
type doctorRun struct {
	s       *Service
	opts    DoctorOptions
	ledger  []store.Resource
	live    map[string]bool // sandbox and container ids with a record
	sbLive  map[string]bool // sandbox ids with a record
	claimed map[string]bool // ledger paths (any owner)
	known   map[string]bool // ids this agent's directories or ledger name
	view    kernelView
	report  DoctorReport
}

// Doctor examines the node and, with opts.Fix, releases what nothing owns.
func (s *Service) Doctor(ctx context.Context, opts DoctorOptions) (DoctorReport, error) {
	if err := s.store.Load(); err != nil {
		return DoctorReport{}, fmt.Errorf("doctor: %w", err)
	}
	d := &doctorRun{s: s, opts: opts, live: map[string]bool{}, sbLive: map[string]bool{},
		claimed: map[string]bool{}, known: map[string]bool{}}
	if err := d.readLedger(); err != nil {
		return DoctorReport{}, err
	}
	if err := d.readKernel(); err != nil {
		return DoctorReport{}, err
	}
	d.checkOrphanRecords(ctx)
	d.checkMissing()
	d.checkShims(ctx)
	d.checkMounts(ctx)
	d.checkNetwork(ctx)
	d.checkCgroups(ctx)
	d.checkDirs(ctx)
	if err := d.checkImages(ctx); err != nil {
		return d.report, err
	}
	return d.report, nil
}

func (d *doctorRun) readLedger() error {
	rs, err := d.s.store.Resources()
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	d.ledger = rs
	for _, sb := range d.s.store.Sandboxes.List() {
		d.live[sb.ID()], d.sbLive[sb.ID()], d.known[sb.ID()] = true, true, true
	}
	for _, c := range d.s.store.Containers.List() {
		d.live[c.ID()], d.known[c.ID()] = true, true
	}
	for _, r := range rs {
		d.claimed[r.Path] = true
		d.known[r.Owner] = true
	}
	return nil
}

func (d *doctorRun) readKernel() error {
	cfg := d.s.cfg
	mounts, err := readMounts(filepath.Clean(cfg.Root), filepath.Clean(cfg.State))
	if err != nil {
		return fmt.Errorf("doctor: read mounts: %w", err)
	}
	parent, err := d.s.cgroups.NormalizeParent("")
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	d.view = kernelView{
		mounts:   mounts,
		shims:    readShims(filepath.Join(cfg.State, "shims")),
		dirs:     d.ownedDirs(),
		cgroups:  readPodCgroups(parent),
		ips:      readReservations(filepath.Join(cfg.State, "cni", "networks")),
		iptables: readIPTablesIDs(),
	}
	for _, p := range d.view.dirs {
		d.known[filepath.Base(p)] = true
	}
	for id := range d.view.shims {
		d.known[id] = true
	}
	for _, id := range d.view.ips {
		d.known[id] = true
	}
	for _, f := range readChildren(filepath.Join(cfg.State, "cni", "cache", "results")) {
		// libcni names its cache files <network>-<container id>-<ifname>.
		for _, part := range strings.Split(filepath.Base(f), "-") {
			if isSandboxID(part) {
				d.known[part] = true
			}
		}
	}
	return nil
}

// ownedDirs are the per-object directories berth makes below its root and state.
func (d *doctorRun) ownedDirs() []string {
	cfg := d.s.cfg
	return readChildren(
		filepath.Join(cfg.State, "sandboxes"), filepath.Join(cfg.State, "netns"),
		filepath.Join(cfg.State, "shims"), filepath.Join(cfg.State, "containers"),
		filepath.Join(cfg.Root, "containers"))
}

func (d *doctorRun) add(f Finding, fix func() error) {
	if d.opts.Fix && fix != nil {
		if err := fix(); err != nil {
			f.FixErr = err.Error()
		} else {
			f.Fixed = true
		}
	}
	d.report.Findings = append(d.report.Findings, f)
}

// releaseFn frees r through the shared release path (which also forgets a ledger entry).
func (d *doctorRun) releaseFn(ctx context.Context, r store.Resource) func() error {
	return func() error { return d.s.release(ctx, r) }
}

// checkOrphanRecords: ledger entries of owners without a record, released as reconcile does.
func (d *doctorRun) checkOrphanRecords(ctx context.Context) {
	for _, r := range d.ledger {
		if d.live[r.Owner] {
			continue
		}
		d.add(Finding{Problem: ProblemOrphanRecord, Kind: string(r.Kind), Path: r.Path, Owner: r.Owner,
			Detail: "owner has no sandbox or container record"}, d.releaseFn(ctx, r))
	}
}

// checkMissing: entries of live owners whose object the node lacks.
func (d *doctorRun) checkMissing() {
	for _, r := range d.ledger {
		if !d.live[r.Owner] {
			continue
		}
		var detail string
		switch r.Kind {
		case store.KindMount, store.KindNetNS:
			if !d.view.mounts[r.Path] {
				detail = "not mounted"
			}
		case store.KindCgroup:
			if !cgroupExists(r.Path) {
				detail = "cgroup does not exist"
			}
		case store.KindShim:
			if _, ok := d.view.shims[r.Owner]; !ok {
				detail = "no shim process serves this directory"
			}
		case store.KindDir:
			if _, err := os.Stat(r.Path); err != nil {
				detail = "directory does not exist"
			}
		}
		if detail != "" {
			d.add(Finding{Problem: ProblemMissing, Kind: string(r.Kind), Path: r.Path, Owner: r.Owner, Detail: detail}, nil)
		}
	}
}

// ownedByLedger reports whether an entry names kind at path. An entry of an owner without a
// record is reported (and released) as an orphan record, not a second time as unowned.
func (d *doctorRun) ownedByLedger(kind store.Kind, path string) bool {
	for _, r := range d.ledger {
		if r.Kind == kind && r.Path == path {
			return true
		}
	}
	return false
}

// checkShims: shim processes of sandboxes that have no shim entry with a live owner. The
// release path shuts a reachable shim down; one that does not answer is killed.
func (d *doctorRun) checkShims(ctx context.Context) {
	for _, id := range sortedKeys(d.view.shims) {
		dir := filepath.Join(d.s.cfg.State, "shims", id)
		if d.ownedByLedger(store.KindShim, dir) {
			continue
		}
		pid := d.view.shims[id]
		r := store.Resource{Kind: store.KindShim, Path: dir, Owner: id}
		d.add(Finding{Problem: ProblemUnowned, Kind: string(store.KindShim), Path: dir, Owner: id,
			Detail: fmt.Sprintf("shim pid %d", pid)}, func() error {
			err := d.s.release(ctx, r)
			if processAlive(pid) {
				if kerr := syscall.Kill(pid, syscall.SIGKILL); kerr != nil && processAlive(pid) {
					return fmt.Errorf("kill unowned shim %d: %w", pid, kerr)
				}
			}
			return err
		})
	}
}

// checkMounts: mounts below root and state that no live owner's mount or netns entry names.
// Deepest first, so that a fix never detaches a parent before its children.
func (d *doctorRun) checkMounts(ctx context.Context) {
	mps := sortedKeys(d.view.mounts)
	sort.Sort(sort.Reverse(sort.StringSlice(mps)))
	netnsDir := filepath.Join(d.s.cfg.State, "netns")
	for _, mp := range mps {
		if d.ownedByLedger(store.KindMount, mp) || d.ownedByLedger(store.KindNetNS, mp) {
			continue
		}
		kind := store.KindMount
		if under(mp, netnsDir) {
			kind = store.KindNetNS
		}
		d.add(Finding{Problem: ProblemUnowned, Kind: string(kind), Path: mp},
			d.releaseFn(ctx, store.Resource{Kind: kind, Path: mp, Owner: "doctor"}))
	}
}

// checkNetwork: IP reservations and iptables rules of sandboxes without a record. The fix is
// the release of the pod's attachment (DEL by sandbox id), then the startup network GC.
func (d *doctorRun) checkNetwork(ctx context.Context) {
	for _, path := range sortedKeys(d.view.ips) {
		id := d.view.ips[path]
		if d.sbLive[id] || d.ownedByLedger(kindCNI, filepath.Join(d.s.podDir(id), networkStateFile)) {
			continue
		}
		d.add(Finding{Problem: ProblemUnowned, Kind: doctorKindIP, Path: path, Owner: id}, d.networkFix(ctx, id))
	}
	for _, id := range sortedKeys(d.view.iptables) {
		if d.sbLive[id] || (d.opts.SharedNode && !d.known[id]) || d.ownedByLedger(kindCNI, filepath.Join(d.s.podDir(id), networkStateFile)) {
			continue
		}
		d.add(Finding{Problem: ProblemUnowned, Kind: doctorKindIPTables, Path: "rules naming " + id, Owner: id}, d.networkFix(ctx, id))
	}
}

func (d *doctorRun) networkFix(ctx context.Context, id string) func() error {
	return func() error {
		path := filepath.Join(d.s.podDir(id), networkStateFile)
		if err := d.s.releaseNetwork(ctx, id, path); err != nil {
			return err
		}
		var valid []string
		for sb := range d.sbLive {
			valid = append(valid, sb)
		}
		return d.s.network.GC(ctx, valid)
	}
}

// checkCgroups: pod cgroups below the default parent that no live owner's entry names.
func (d *doctorRun) checkCgroups(ctx context.Context) {
	parent, _ := d.s.cgroups.NormalizeParent("")
	for _, id := range sortedKeys(d.view.cgroups) {
		path := d.s.cgroups.PodPath(parent, id)
		if d.ownedByLedger(store.KindCgroup, path) || d.sbLive[id] {
			continue
		}
		if d.opts.SharedNode && !d.known[id] {
			continue
		}
		d.add(Finding{Problem: ProblemUnowned, Kind: string(store.KindCgroup), Path: path, Owner: id},
			d.releaseFn(ctx, store.Resource{Kind: store.KindCgroup, Path: path, Owner: id}))
	}
}

// checkDirs: per-object directories whose object has no record and no ledger entry.
func (d *doctorRun) checkDirs(ctx context.Context) {
	for _, p := range d.view.dirs {
		id := filepath.Base(p)
		if d.live[id] || d.ownedByLedger(store.KindDir, p) || d.ownedByLedger(store.KindShim, p) || d.ownedByLedger(store.KindNetNS, p) {
			continue
		}
		if _, err := os.Stat(p); err != nil {
			continue // a fix above (a shim's release) already removed it
		}
		d.add(Finding{Problem: ProblemUnowned, Kind: string(store.KindDir), Path: p, Owner: id},
			d.releaseFn(ctx, store.Resource{Kind: store.KindDir, Path: p, Owner: id}))
	}
}

// checkImages: leases whose owner no live ledger entry names, and snapshots nothing
// references (a GC that a crash interrupted).
func (d *doctorRun) checkImages(ctx context.Context) error {
	if d.opts.Images == nil {
		return nil
	}
	a, err := d.opts.Images.Audit(ctx)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	leased := map[string]bool{}
	for _, r := range d.ledger {
		switch {
		case r.Kind == store.KindLease && d.live[r.Owner]:
			leased[r.Owner] = true
		case r.Kind == kindImageVolumeLease && d.live[r.Owner]:
			leased[r.Path] = true
		}
	}
	for _, owner := range a.LeaseOwners {
		if leased[owner] {
			continue
		}
		d.add(Finding{Problem: ProblemUnowned, Kind: string(store.KindLease), Path: owner, Owner: owner},
			func() error { return d.s.cimages.Unlease(ctx, owner) })
	}
	gone := map[string]bool{}
	if d.opts.Fix {
		// Unlease only kicks a background collection: collect now, then look again.
		if err := d.opts.Images.GC(ctx); err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		after, err := d.opts.Images.Audit(ctx)
		if err != nil {
			return fmt.Errorf("doctor: %w", err)
		}
		for _, chain := range a.UnreferencedSnapshots {
			gone[chain] = !slices.Contains(after.UnreferencedSnapshots, chain)
		}
	}
	for _, chain := range a.UnreferencedSnapshots {
		d.report.Findings = append(d.report.Findings, Finding{Problem: ProblemUnowned, Kind: doctorKindSnapshot,
			Path: chain, Detail: "no image, lease or pull references it", Fixed: gone[chain]})
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
