package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// The profile subcommand explains the rows of the comparison that miss their targets: it
// runs one workload at a time on berth alone for a fixed time and records, for that window,
//   - where berth's wall time goes: the mean of each step of each CRI operation, from the
//     agent's berth_operation_step_duration_seconds histogram (before/after difference);
//   - where the agent's CPU goes: a Go CPU profile from its /debug/pprof/;
//   - where the whole machine's CPU goes (shims, runc init, CNI plugins, the kernel): a
//     system-wide `perf record`, when perf is installed;
//   - for the memory workload: the agent's heap profile and the largest mappings of one
//     shim and one pod init by PSS;
//   - for the cni workload: ADD and DEL of the same conflist through libcni with no runtime
//     (cni_floor.go), the floor under a pod's network setup and teardown.
// Each workload writes <out>/<workload>.* and a summary <out>/<workload>.txt.

// profileWorkloads are the workloads the subcommand knows, in the order it runs them.
var profileWorkloads = []string{"lifecycle", "throughput4", "cni", "pull", "memory"}

type profiler struct {
	r        *Runtime
	pprofURL string // http://host:port of the agent's metrics server
	berthBin string // the agent's binary, for pprof's symbols
	out      string
	window   time.Duration
	pods     int
}

func profile(args []string) error {
	fs := flag.NewFlagSet("profile", flag.ContinueOnError)
	sock := fs.String("berth", "", "berth's CRI socket")
	pid := fs.Int("berth-pid", 0, "berth's pid")
	state := fs.String("berth-state", "", "berth's state dir")
	root := fs.String("berth-root", "", "berth's root dir")
	bin := fs.String("berth-bin", "", "berth's binary (symbols for pprof)")
	metrics := fs.String("metrics", "", "berth's metrics address (host:port)")
	cgroupParent := fs.String("cgroup-parent", "/berthbench", "cgroupfs parent of every pod")
	out := fs.String("out", "", "directory for the profiles and summaries")
	seconds := fs.Int("seconds", 20, "length of each workload's window")
	pods := fs.Int("pods", 100, "pods for the memory workload")
	only := fs.String("workloads", strings.Join(profileWorkloads, ","), "comma-separated workloads to profile")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sock == "" || *pid == 0 || *state == "" || *root == "" || *bin == "" || *metrics == "" || *out == "" {
		return errors.New("profile: --berth, --berth-pid, --berth-state, --berth-root, --berth-bin, --metrics and --out are required")
	}
	r := &Runtime{Name: "berth", PID: *pid, State: *state, Root: *root, ShimExe: "berth-shim",
		LogDir: filepath.Join(*out, "logs"), CgroupNS: *cgroupParent + "/berth"}
	if err := r.dial(*sock); err != nil {
		return err
	}
	defer r.conn.Close()
	if err := os.MkdirAll(r.LogDir, 0o755); err != nil {
		return fmt.Errorf("log dir: %w", err)
	}
	p := &profiler{r: r, pprofURL: "http://" + *metrics, berthBin: *bin, out: *out,
		window: time.Duration(*seconds) * time.Second, pods: *pods}
	if err := warmUp(r); err != nil {
		return fmt.Errorf("warm-up: %w", err)
	}
	var runErr error
	for _, w := range strings.Split(*only, ",") {
		if runErr = p.run(w); runErr != nil {
			break
		}
	}
	if err := r.cleanup(); err != nil {
		log.Printf("cleanup: %v", err)
	}
	return runErr
}

// run profiles one workload over the window.
func (p *profiler) run(w string) error {
	log.Printf("profiling %s for %s", w, p.window)
	before, err := p.steps()
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	var cpuErr, perfErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		cpuErr = p.fetch("/debug/pprof/profile?seconds="+secs(p.window), w+".agent-cpu.pprof")
	}()
	go func() { defer wg.Done(); perfErr = p.perfRecord(w) }()
	var floor strings.Builder
	n, loadErr := p.load(w, &floor)
	wg.Wait()
	if loadErr != nil {
		return fmt.Errorf("%s: %w", w, loadErr)
	}
	after, err := p.steps()
	if err != nil {
		return err
	}
	var sum strings.Builder
	fmt.Fprintf(&sum, "workload %s: %d iterations in %s\n\n", w, n, p.window)
	writeSteps(&sum, before, after)
	sum.WriteString(floor.String())
	if w == "memory" {
		p.memorySummary(&sum)
	}
	if cpuErr != nil {
		fmt.Fprintf(&sum, "\nagent CPU profile: %v\n", cpuErr)
	} else {
		fmt.Fprintf(&sum, "\nagent CPU profile (go tool pprof -top):\n%s", p.pprofTop(w+".agent-cpu.pprof", 25))
	}
	if perfErr != nil {
		fmt.Fprintf(&sum, "\nsystem-wide perf: %v\n", perfErr)
	} else {
		fmt.Fprintf(&sum, "\nsystem-wide CPU by command (perf report --sort comm):\n%s", p.perfReport(w, "comm", 25))
		fmt.Fprintf(&sum, "\nsystem-wide CPU by command and symbol (perf report --sort comm,sym):\n%s", p.perfReport(w, "comm,sym", 40))
	}
	path := filepath.Join(p.out, w+".txt")
	if err := os.WriteFile(path, []byte(sum.String()), 0o644); err != nil {
		return err
	}
	log.Printf("%s: summary in %s", w, path)
	return nil
}

// load runs the workload until the window is over and returns how many iterations ran.
func (p *profiler) load(w string, out io.Writer) (int, error) {
	deadline := time.Now().Add(p.window)
	n := 0
	switch w {
	case "lifecycle":
		for ; time.Now().Before(deadline); n++ {
			if err := lifecycle(p.r); err != nil {
				return n, err
			}
		}
	case "throughput4":
		var mu sync.Mutex
		var wg sync.WaitGroup
		errs := make(chan error, 4)
		for i := 0; i < 4; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					if err := lifecycle(p.r); err != nil {
						errs <- err
						return
					}
					mu.Lock()
					n++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		close(errs)
		return n, <-errs
	case "cni":
		return p.cniFloor(deadline, out)
	case "pull":
		res := &Results{}
		for ; time.Now().Before(deadline); n++ {
			if err := pullOps(res, p.r, 1); err != nil {
				return n, err
			}
		}
	case "memory":
		var pods []Pod
		for i := 0; i < p.pods; i++ {
			pod, err := p.r.runPod(false)
			if err != nil {
				return n, err
			}
			pods = append(pods, pod)
		}
		n = len(pods)
		time.Sleep(time.Until(deadline))
		if err := p.fetch("/debug/pprof/heap", "memory.agent-heap.pprof"); err != nil {
			return n, err
		}
		if err := p.saveSmaps(); err != nil {
			return n, err
		}
		return n, removePods(p.r, pods)
	default:
		return 0, fmt.Errorf("unknown workload (known: %s)", strings.Join(profileWorkloads, ", "))
	}
	return n, nil
}

// fetch saves a URL path of the agent's metrics server to a file of the output directory.
func (p *profiler) fetch(path, file string) error {
	ctx, cancel := context.WithTimeout(context.Background(), p.window+time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.pprofURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("get %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("get %s: %s", path, resp.Status)
	}
	f, err := os.Create(filepath.Join(p.out, file))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return fmt.Errorf("get %s: %w", path, err)
	}
	return f.Close()
}

// perfRecord samples every CPU, with call graphs, for the window.
func (p *profiler) perfRecord(w string) error {
	perf, err := exec.LookPath("perf")
	if err != nil {
		return errors.New("perf is not installed (apt-get install linux-perf)")
	}
	cmd := exec.Command(perf, "record", "-a", "-g", "-F", "499", "-o", filepath.Join(p.out, w+".perf.data"), "--", "sleep", secs(p.window))
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("perf record: %v: %s", err, lastLines(string(b), 3))
	}
	return nil
}

func (p *profiler) perfReport(w, sortKeys string, lines int) string {
	cmd := exec.Command("perf", "report", "-i", filepath.Join(p.out, w+".perf.data"), "--no-children",
		"--sort", sortKeys, "--stdio", "-g", "none", "--percent-limit", "0.5")
	b, err := cmd.Output()
	if err != nil {
		return fmt.Sprintf("perf report: %v\n", err)
	}
	return firstLines(dropComments(string(b)), lines)
}

func (p *profiler) pprofTop(file string, lines int) string {
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount", fmt.Sprint(lines), p.berthBin, filepath.Join(p.out, file))
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof: %v: %s\n", err, lastLines(string(b), 3))
	}
	return string(b)
}

// stepKey is one (operation, step) series of berth_operation_step_duration_seconds.
type stepKey struct{ op, step string }

type stepSum struct {
	count uint64
	sum   float64
}

// steps scrapes the agent's step histogram.
func (p *profiler) steps() (map[stepKey]stepSum, error) {
	resp, err := http.Get(p.pprofURL + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape metrics: %w", err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	out := map[stepKey]stepSum{}
	fam := fams["berth_operation_step_duration_seconds"]
	if fam == nil {
		return out, nil
	}
	for _, m := range fam.GetMetric() {
		var k stepKey
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "operation":
				k.op = l.GetValue()
			case "step":
				k.step = l.GetValue()
			}
		}
		h := m.GetHistogram()
		out[k] = stepSum{count: h.GetSampleCount(), sum: h.GetSampleSum()}
	}
	return out, nil
}

// writeSteps prints the mean wall time of each step over the window (after - before).
func writeSteps(w io.Writer, before, after map[stepKey]stepSum) {
	keys := make([]stepKey, 0, len(after))
	for k := range after {
		if after[k].count > before[k].count {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return
	}
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].op != keys[j].op {
			return keys[i].op < keys[j].op
		}
		return keys[i].step < keys[j].step
	})
	fmt.Fprintf(w, "berth's steps (mean wall time over the window; RunPodSandbox's network and cgroup/shim/init branches overlap):\n")
	fmt.Fprintf(w, "%-18s %-26s %8s %10s\n", "operation", "step", "count", "mean ms")
	for _, k := range keys {
		n := after[k].count - before[k].count
		mean := (after[k].sum - before[k].sum) / float64(n) * 1000
		fmt.Fprintf(w, "%-18s %-26s %8d %10.2f\n", k.op, k.step, n, mean)
	}
}

func secs(d time.Duration) string { return fmt.Sprint(int(d.Seconds())) }

func firstLines(s string, n int) string {
	ls := strings.SplitAfter(s, "\n")
	if len(ls) > n {
		ls = ls[:n]
	}
	return strings.Join(ls, "")
}

func lastLines(s string, n int) string {
	ls := strings.Split(strings.TrimSpace(s), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, " / ")
}

func dropComments(s string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.HasPrefix(l, "#") || strings.TrimSpace(l) == "" {
			continue
		}
		b.WriteString(l)
	}
	return b.String()
}

// saveSmaps copies the smaps of the agent, of one of its shims and of that shim's pod init
// into the output directory, while the memory workload's pods run.
func (p *profiler) saveSmaps() error {
	procs, err := processes()
	if err != nil {
		return err
	}
	pids := map[string]int{"agent": p.r.PID}
	for _, pr := range procs {
		if pr.exe != p.r.ShimExe || !strings.Contains(string(pr.cmdline), p.r.State) {
			continue
		}
		pids["shim"] = pr.pid
		for _, c := range procs {
			if c.ppid == pr.pid {
				pids["pod-init"] = c.pid
			}
		}
		break
	}
	for name, pid := range pids {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
		if err != nil {
			return fmt.Errorf("smaps of %s (%d): %w", name, pid, err)
		}
		if err := os.WriteFile(filepath.Join(p.out, "memory."+name+".smaps"), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// memorySummary prints, per saved process, its PSS split into mappings: what bounds the
// per-pod memory is there (the Go runtime's heap and stacks, the binary's text, libc).
func (p *profiler) memorySummary(w io.Writer) {
	for _, name := range []string{"agent", "shim", "pod-init"} {
		b, err := os.ReadFile(filepath.Join(p.out, "memory."+name+".smaps"))
		if err != nil {
			continue
		}
		maps := smapsByMapping(string(b))
		var total float64
		for _, m := range maps {
			total += m.pssKB
		}
		fmt.Fprintf(w, "\n%s: PSS %.0f kB, RSS-anon %.0f kB, by mapping (largest first):\n", name, total, sumAnon(maps))
		for i, m := range maps {
			if i == 12 || m.pssKB < 4 {
				break
			}
			fmt.Fprintf(w, "  %8.0f kB PSS %8.0f kB anon  %s\n", m.pssKB, m.anonKB, m.name)
		}
	}
	fmt.Fprintf(w, "\nagent heap (go tool pprof -top -sample_index=inuse_space):\n%s", p.pprofHeapTop())
}

func (p *profiler) pprofHeapTop() string {
	cmd := exec.Command("go", "tool", "pprof", "-top", "-nodecount", "20", "-sample_index", "inuse_space",
		p.berthBin, filepath.Join(p.out, "memory.agent-heap.pprof"))
	b, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Sprintf("go tool pprof: %v: %s\n", err, lastLines(string(b), 3))
	}
	return string(b)
}

type mapping struct {
	name          string
	pssKB, anonKB float64
}

// smapsByMapping sums /proc/<pid>/smaps per mapped file (anonymous ones by their label or
// "[anon]"), largest PSS first.
func smapsByMapping(smaps string) []mapping {
	by := map[string]*mapping{}
	var cur *mapping
	for _, l := range strings.Split(smaps, "\n") {
		f := strings.Fields(l)
		if len(f) == 0 {
			continue
		}
		if strings.Contains(f[0], "-") && len(f) >= 5 { // a mapping's header line
			name := "[anon]"
			if len(f) >= 6 {
				name = f[5]
			}
			if by[name] == nil {
				by[name] = &mapping{name: name}
			}
			cur = by[name]
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		var v float64
		fmt.Sscan(f[1], &v)
		switch f[0] {
		case "Pss:":
			cur.pssKB += v
		case "Anonymous:":
			cur.anonKB += v
		}
	}
	out := make([]mapping, 0, len(by))
	for _, m := range by {
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].pssKB > out[j].pssKB })
	return out
}

func sumAnon(ms []mapping) float64 {
	var n float64
	for _, m := range ms {
		n += m.anonKB
	}
	return n
}
