package main

import (
	"fmt"
	"log"
	"sync"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Params sizes the workloads.
type Params struct {
	Rounds     int // each round runs every workload on both runtimes, the order reversed each round
	Singles    int // samples per round of each single-call latency
	Execs      int // ExecSync samples per round
	Pods       int // pods per throughput run
	Containers int // running containers for the stats calls, and pods for the memory sample
	StatsCalls int // samples per round of each stats call
	Pulls      int // cold pulls of the big image per round
}

// Results holds the samples: op -> runtime -> values in the op's unit.
type Results struct {
	mu      sync.Mutex
	samples map[string]map[string][]float64
	order   []string // ops in the order first measured
}

func (res *Results) add(op, rt string, v float64) {
	res.mu.Lock()
	defer res.mu.Unlock()
	if res.samples == nil {
		res.samples = map[string]map[string][]float64{}
	}
	if res.samples[op] == nil {
		res.samples[op] = map[string][]float64{}
		res.order = append(res.order, op)
	}
	res.samples[op][rt] = append(res.samples[op][rt], v)
}

// timed runs f and records its wall time in milliseconds under op.
func (res *Results) timed(op string, r *Runtime, f func() error) error {
	start := time.Now()
	if err := f(); err != nil {
		return err
	}
	res.add(op, r.Name, ms(time.Since(start)))
	return nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// warmUp pulls the images and runs one pod with a container so that neither runtime pays
// a first-time cost (pause pull, CNI config load, first shim exec) inside a measurement.
func warmUp(r *Runtime) error {
	if err := r.pull(BusyboxRef); err != nil {
		return err
	}
	p, err := r.runPod(false)
	if err != nil {
		return err
	}
	c, err := r.createContainer(p, ignoreTerm)
	if err == nil {
		err = r.startContainer(c)
	}
	if err == nil {
		err = r.execSync(c, "true")
	}
	if err == nil {
		err = r.stopPod(p.ID)
	}
	if err == nil {
		err = r.removePod(p.ID)
	}
	return err
}

// singleOps measures each CRI call of a pod's life on its own, once per sample.
func singleOps(res *Results, r *Runtime, n int) error {
	for i := 0; i < n; i++ {
		var p Pod
		if err := res.timed("RunPodSandbox (CNI)", r, func() (err error) { p, err = r.runPod(false); return err }); err != nil {
			return err
		}
		var c1, c2 string
		created := time.Now()
		if err := res.timed("CreateContainer", r, func() (err error) { c1, err = r.createContainer(p, exitOnTerm); return err }); err != nil {
			return err
		}
		if err := res.timed("StartContainer", r, func() error { return r.startContainer(c1) }); err != nil {
			return err
		}
		// The runtimes split the work differently (berth's shim runs runc init at create,
		// containerd's at start): the sum is what a pod waits for.
		res.add("CreateContainer + StartContainer", r.Name, ms(time.Since(created)))
		// Give the shell a moment to set its trap: a TERM before it would kill it the same way,
		// but would not measure the graceful path.
		time.Sleep(200 * time.Millisecond)
		if err := res.timed("StopContainer (exits on TERM, timeout 10)", r, func() error { return r.stopContainer(c1, 10) }); err != nil {
			return err
		}
		c2, err := r.createContainer(p, ignoreTerm)
		if err != nil {
			return err
		}
		if err := r.startContainer(c2); err != nil {
			return err
		}
		if err := res.timed("StopContainer (ignores TERM, timeout 0)", r, func() error { return r.stopContainer(c2, 0) }); err != nil {
			return err
		}
		if err := res.timed("StopPodSandbox", r, func() error { return r.stopPod(p.ID) }); err != nil {
			return err
		}
		if err := res.timed("RemovePodSandbox", r, func() error { return r.removePod(p.ID) }); err != nil {
			return err
		}
		var h Pod
		if err := res.timed("RunPodSandbox (host network)", r, func() (err error) { h, err = r.runPod(true); return err }); err != nil {
			return err
		}
		if err := r.stopPod(h.ID); err != nil {
			return err
		}
		if err := r.removePod(h.ID); err != nil {
			return err
		}
	}
	return nil
}

// lifecycle is one whole pod life: run, create, start, stop (SIGKILL), stop pod, remove pod.
func lifecycle(r *Runtime) error {
	p, err := r.runPod(false)
	if err != nil {
		return err
	}
	c, err := r.createContainer(p, ignoreTerm)
	if err == nil {
		err = r.startContainer(c)
	}
	if err == nil {
		err = r.stopContainer(c, 0)
	}
	if err == nil {
		err = r.stopPod(p.ID)
	}
	if err == nil {
		err = r.removePod(p.ID)
	}
	return err
}

// throughput runs pods whole lifecycles on workers goroutines and records pods per second;
// with one worker it also records each lifecycle's latency.
func throughput(res *Results, r *Runtime, pods, workers int) error {
	jobs := make(chan struct{}, pods)
	for i := 0; i < pods; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				t := time.Now()
				if err := lifecycle(r); err != nil {
					errs <- err
					return
				}
				if workers == 1 {
					res.add("pod lifecycle (run..remove)", r.Name, ms(time.Since(t)))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	res.add(fmt.Sprintf("pods/s, %d workers", workers), r.Name, float64(pods)/time.Since(start).Seconds())
	return nil
}

// execOps measures ExecSync of `true` in a running container.
func execOps(res *Results, r *Runtime, n int) error {
	p, err := r.runPod(false)
	if err != nil {
		return err
	}
	c, err := r.createContainer(p, ignoreTerm)
	if err == nil {
		err = r.startContainer(c)
	}
	for i := 0; err == nil && i < n; i++ {
		err = res.timed("ExecSync (true)", r, func() error { return r.execSync(c, "true") })
	}
	if err != nil {
		return err
	}
	if err := r.stopPod(p.ID); err != nil {
		return err
	}
	return r.removePod(p.ID)
}

// statsOps starts n running containers, ten to a pod, and times the two stats lists.
func statsOps(res *Results, r *Runtime, n, calls int) error {
	var pods []Pod
	for started := 0; started < n; {
		p, err := r.runPod(false)
		if err != nil {
			return err
		}
		pods = append(pods, p)
		for k := 0; k < 10 && started < n; k++ {
			c, err := r.createContainer(p, ignoreTerm)
			if err != nil {
				return err
			}
			if err := r.startContainer(c); err != nil {
				return err
			}
			started++
		}
	}
	cs := fmt.Sprintf("ListContainerStats (%d running)", n)
	ps := fmt.Sprintf("ListPodSandboxStats (%d running)", n)
	for i := 0; i < calls; i++ {
		if err := res.timed(cs, r, func() error {
			ctx, cancel := ctxT()
			defer cancel()
			resp, err := r.rt.ListContainerStats(ctx, &runtimeapi.ListContainerStatsRequest{})
			if err == nil && len(resp.Stats) < n {
				err = fmt.Errorf("%d stats for %d running containers", len(resp.Stats), n)
			}
			if err != nil {
				return fmt.Errorf("%s: list container stats: %w", r.Name, err)
			}
			return nil
		}); err != nil {
			return err
		}
		if err := res.timed(ps, r, func() error {
			ctx, cancel := ctxT()
			defer cancel()
			resp, err := r.rt.ListPodSandboxStats(ctx, &runtimeapi.ListPodSandboxStatsRequest{})
			if err == nil && len(resp.Stats) < len(pods) {
				err = fmt.Errorf("%d stats for %d pods", len(resp.Stats), len(pods))
			}
			if err != nil {
				return fmt.Errorf("%s: list pod stats: %w", r.Name, err)
			}
			return nil
		}); err != nil {
			return err
		}
	}
	return removePods(r, pods)
}

func removePods(r *Runtime, pods []Pod) error {
	for _, p := range pods {
		if err := r.stopPod(p.ID); err != nil {
			return err
		}
		if err := r.removePod(p.ID); err != nil {
			return err
		}
	}
	return nil
}

// pullOps pulls the big image into a cold store: before each pull the image is removed and
// the runtime's root is watched until its blobs and unpacked layers are gone (berth
// collects them in the background, containerd on removal), so that no pull finds a layer.
func pullOps(res *Results, r *Runtime, n int) error {
	// Absent already is fine: only the pulls below are measured.
	_ = r.removeImage(BigRef)
	if err := waitCold(r, 0); err != nil {
		return err
	}
	base, err := diskUsage(r.Root)
	if err != nil {
		return err
	}
	for i := 0; i < n; i++ {
		if err := res.timed("PullImage (~200 MB, 5 layers, cold)", r, func() error { return r.pull(BigRef) }); err != nil {
			return err
		}
		if err := r.removeImage(BigRef); err != nil {
			return err
		}
		if err := waitCold(r, base); err != nil {
			return err
		}
	}
	return nil
}

// coldSlack is how far above the cold size the root may stay (metadata, logs, databases).
const coldSlack = 50 << 20

// waitCold waits until the runtime's root is within coldSlack of base bytes (base 0: only
// until it stops shrinking), for a minute at most.
func waitCold(r *Runtime, base int64) error {
	prev := int64(-1)
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		u, err := diskUsage(r.Root)
		if err != nil {
			return err
		}
		if (base > 0 && u < base+coldSlack) || (base == 0 && u == prev) {
			return nil
		}
		prev = u
	}
	return fmt.Errorf("%s: the store under %s still holds the removed image after a minute", r.Name, r.Root)
}

// memory records the agent's RSS idle and with n sandbox-only pods, and the PSS per pod of
// the runtime's per-pod processes (shim, and pause or pod init).
func memory(res *Results, r *Runtime, n int) error {
	rss, err := rssMiB(r.PID)
	if err != nil {
		return err
	}
	res.add("agent RSS idle (MiB)", r.Name, rss)
	var pods []Pod
	for i := 0; i < n; i++ {
		p, err := r.runPod(false)
		if err != nil {
			return err
		}
		pods = append(pods, p)
	}
	// Let lazily started work (stats collectors, page faults of fresh processes) settle.
	time.Sleep(2 * time.Second)
	if rss, err = rssMiB(r.PID); err != nil {
		return err
	}
	res.add(fmt.Sprintf("agent RSS with %d pods (MiB)", n), r.Name, rss)
	m, err := podProcesses(r)
	if err != nil {
		return err
	}
	log.Printf("%s: per-pod processes of %d pods by executable: %v", r.Name, n, m.exes)
	res.add("PSS per pod: shim (MiB)", r.Name, m.shim/float64(n))
	res.add("PSS per pod: pause / pod init (MiB)", r.Name, m.other/float64(n))
	res.add("PSS per pod: all per-pod processes (MiB)", r.Name, (m.shim+m.other)/float64(n))
	res.add("per-pod processes per pod", r.Name, float64(m.count)/float64(n))
	return removePods(r, pods)
}

// round runs every workload on r.
func round(res *Results, r *Runtime, p Params) error {
	steps := []struct {
		name string
		f    func() error
	}{
		{"memory", func() error { return memory(res, r, p.Containers) }},
		{"single calls", func() error { return singleOps(res, r, p.Singles) }},
		{"exec", func() error { return execOps(res, r, p.Execs) }},
		{"throughput x1", func() error { return throughput(res, r, p.Pods, 1) }},
		{"throughput x4", func() error { return throughput(res, r, p.Pods, 4) }},
		{"throughput x16", func() error { return throughput(res, r, p.Pods, 16) }},
		{"stats", func() error { return statsOps(res, r, p.Containers, p.StatsCalls) }},
		{"pull", func() error { return pullOps(res, r, p.Pulls) }},
	}
	for _, s := range steps {
		t := time.Now()
		if err := s.f(); err != nil {
			return fmt.Errorf("%s: %w", s.name, err)
		}
		log.Printf("%s: %s done in %s", r.Name, s.name, time.Since(t).Round(time.Millisecond))
	}
	return nil
}

// runAll alternates the runtimes: round 1 a then b, round 2 b then a, and so on, so that
// a drift of the machine's load over the run weighs on both.
func runAll(res *Results, rts [2]*Runtime, p Params) error {
	for _, r := range rts {
		if err := warmUp(r); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	for i := 0; i < p.Rounds; i++ {
		order := rts
		if i%2 == 1 {
			order = [2]*Runtime{rts[1], rts[0]}
		}
		for _, r := range order {
			log.Printf("round %d: %s", i+1, r.Name)
			if err := round(res, r, p); err != nil {
				return fmt.Errorf("round %d on %s: %w", i+1, r.Name, err)
			}
		}
	}
	return nil
}
