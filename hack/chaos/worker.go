package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Container kinds the workers run, each with a known outcome.
const (
	kindLogger  = "logger"  // writes numbered lines fast, exits 0
	kindCrasher = "crasher" // exits with a chosen code
	kindOOM     = "oom"     // allocates past its memory limit: 137, OOMKilled
	kindSleeper = "sleeper" // runs until stopped; exec target
)

// podRec and ctrRec are the driver's journal: what RPCs that returned success said.
type podRec struct {
	id, name, logDir string
	removed, keeper  bool
	// removeTried: a removal was attempted, so the pod may be gone even if no attempt
	// returned success (the agent died after removing it, before answering).
	removeTried bool
}

type ctrRec struct {
	id, pod, name, kind, logPath string
	wantCode                     int32
	lines                        int
	started, stopped, removed    bool
	removeTried                  bool // as podRec's
}

// journal holds every success; the final check compares it with the agent's state.
type journal struct {
	mu     sync.Mutex
	pods   map[string]*podRec
	ctrs   map[string]*ctrRec
	images map[string]string // ref -> imgPresent, imgAbsent, or imgUnknown after a failed pull/remove
	// shimKilled are sandboxes whose shim the killer ended: their containers' exit codes and
	// logs are legitimately lost, so they are left out of those checks (and counted).
	shimKilled map[string]bool
	// everPods are every sandbox id seen, for the leak checks.
	everPods map[string]bool
}

func newJournal() *journal {
	return &journal{pods: map[string]*podRec{}, ctrs: map[string]*ctrRec{}, images: map[string]string{},
		shimKilled: map[string]bool{}, everPods: map[string]bool{}}
}

func (j *journal) update(f func()) {
	j.mu.Lock()
	defer j.mu.Unlock()
	f()
}

func (j *journal) isShimKilled(pod string) bool {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.shimKilled[pod]
}

// Image states in the journal.
const (
	imgPresent = "present"
	imgAbsent  = "absent"
	imgUnknown = "unknown" // the last pull or remove failed: it may have taken effect
)

// driver is shared by the workers, the killer and the faulter.
type driver struct {
	e        *env
	t        *tally
	j        *journal
	stop     atomic.Bool // churn ends: workers finish their pod and leave it as keeper
	mutating atomic.Int32
}

// retryable are the codes an RPC gets while the agent is dead, restarting or recovering,
// or while a fault is injected: the call is not done, and is tried again.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.Canceled, codes.DeadlineExceeded, codes.Unknown, codes.Internal,
		codes.ResourceExhausted, codes.Aborted:
		return true
	}
	return false
}

// call runs fn until it succeeds, fails for good, or budget passes; only a success counts
// as done. mutating calls are counted in flight, so a kill meanwhile is a mid-write kill.
func (d *driver) call(ctx context.Context, op string, budget time.Duration, mutating bool, fn func(context.Context) error) error {
	end := time.Now().Add(budget)
	for {
		if mutating {
			d.mutating.Add(1)
		}
		cctx, cancel := context.WithTimeout(ctx, 25*time.Second)
		err := fn(cctx)
		cancel()
		if mutating {
			d.mutating.Add(-1)
		}
		if err == nil {
			d.t.inc("op", op)
			return nil
		}
		key := op + " " + status.Code(err).String()
		d.t.inc("op-failed", key)
		if d.t.get("op-failed", key) <= 1 {
			d.t.note("%s: %v", key, err)
		}
		if ctx.Err() != nil || time.Now().After(end) || !retryable(err) {
			return err
		}
		time.Sleep(150*time.Millisecond + time.Duration(rand.IntN(200))*time.Millisecond)
	}
}

type worker struct {
	d   *driver
	n   int
	rng *rand.Rand
	seq int
}

func (w *worker) name(prefix string) string {
	w.seq++
	return fmt.Sprintf("w%d-%s-%d", w.n, prefix, w.seq)
}

// run churns pod lives until the driver stops.
func (w *worker) run(ctx context.Context) {
	for !w.d.stop.Load() && ctx.Err() == nil {
		if w.rng.IntN(6) == 0 {
			w.imageOps(ctx)
		}
		w.podLife(ctx)
	}
}

// runPod creates a pod, with a fresh name per attempt: an attempt that failed may still
// have made its pod (left for the final cleanup, never counted as done).
func (w *worker) runPod(ctx context.Context) (*podRec, error) {
	for attempt := 0; attempt < 20 && ctx.Err() == nil; attempt++ {
		name := w.name("pod")
		logDir := filepath.Join(w.d.e.logs, name)
		if err := os.MkdirAll(logDir, 0o755); err != nil {
			return nil, err
		}
		cfg := &runtimeapi.PodSandboxConfig{
			Metadata:     &runtimeapi.PodSandboxMetadata{Name: name, Namespace: "chaos", Uid: name},
			Hostname:     name,
			LogDirectory: logDir,
			Labels:       map[string]string{"chaos": "1"},
			Linux:        &runtimeapi.LinuxPodSandboxConfig{}, // pid namespace POD: a pod init runs
		}
		var id string
		err := w.d.call(ctx, "RunPodSandbox", 0, true, func(c context.Context) error {
			resp, err := w.d.e.agent.rt().RunPodSandbox(c, &runtimeapi.RunPodSandboxRequest{Config: cfg})
			if err == nil {
				id = resp.PodSandboxId
			}
			return err
		})
		if err == nil {
			p := &podRec{id: id, name: name, logDir: logDir}
			w.d.j.update(func() { w.d.j.pods[id], w.d.j.everPods[id] = p, true })
			return p, nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil, fmt.Errorf("no pod after 20 attempts")
}

func (w *worker) ctrConfig(kind string) (*runtimeapi.ContainerConfig, *ctrRec) {
	name := w.name(kind)
	rec := &ctrRec{name: name, kind: kind, logPath: name + ".log"}
	var script string
	res := &runtimeapi.LinuxContainerResources{}
	switch kind {
	case kindLogger:
		rec.lines = 500 + w.rng.IntN(2500)
		script = fmt.Sprintf(`i=1; while [ $i -le %d ]; do echo "L$i"; i=$((i+1)); done`, rec.lines)
	case kindCrasher:
		rec.wantCode = int32(1 + w.rng.IntN(120))
		script = fmt.Sprintf("sleep 0.%d; exit %d", w.rng.IntN(10), rec.wantCode)
	case kindOOM:
		rec.wantCode = 137
		res.MemoryLimitInBytes = 24 << 20
		script = "exec tail /dev/zero" // tail keeps the endless line of /dev/zero in memory
	case kindSleeper:
		script = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
	}
	return &runtimeapi.ContainerConfig{
		Metadata: &runtimeapi.ContainerMetadata{Name: name},
		Image:    &runtimeapi.ImageSpec{Image: w.d.e.busybox},
		Command:  []string{"/bin/sh", "-c", script},
		LogPath:  rec.logPath,
		Linux:    &runtimeapi.LinuxContainerConfig{Resources: res},
	}, rec
}

// startContainer creates and starts one container; rec.started only when Start succeeded.
func (w *worker) startContainer(ctx context.Context, p *podRec, kind string) *ctrRec {
	for attempt := 0; attempt < 10 && ctx.Err() == nil; attempt++ {
		cfg, rec := w.ctrConfig(kind)
		rec.pod = p.id
		podCfg := &runtimeapi.PodSandboxConfig{Metadata: &runtimeapi.PodSandboxMetadata{Name: p.name, Namespace: "chaos", Uid: p.name}, LogDirectory: p.logDir}
		err := w.d.call(ctx, "CreateContainer", 0, true, func(c context.Context) error {
			resp, err := w.d.e.agent.rt().CreateContainer(c, &runtimeapi.CreateContainerRequest{PodSandboxId: p.id, Config: cfg, SandboxConfig: podCfg})
			if err == nil {
				rec.id = resp.ContainerId
			}
			return err
		})
		if err != nil {
			if status.Code(err) == codes.NotFound || status.Code(err) == codes.FailedPrecondition {
				return nil // the pod is gone or not ready (its shim was killed)
			}
			continue
		}
		w.d.j.update(func() { w.d.j.ctrs[rec.id] = rec })
		err = w.d.call(ctx, "StartContainer", 30*time.Second, true, func(c context.Context) error {
			_, err := w.d.e.agent.rt().StartContainer(c, &runtimeapi.StartContainerRequest{ContainerId: rec.id})
			return err
		})
		if err == nil {
			w.d.j.update(func() { rec.started = true })
		}
		return rec
	}
	return nil
}

func (w *worker) podLife(ctx context.Context) {
	p, err := w.runPod(ctx)
	if err != nil {
		return
	}
	kinds := []string{kindLogger, kindCrasher, kindOOM, kindSleeper}
	var ctrs []*ctrRec
	n := 1 + w.rng.IntN(3)
	for i := 0; i < n; i++ {
		kind := kinds[w.rng.IntN(len(kinds))]
		if i == 0 {
			kind = kindSleeper
		}
		if c := w.startContainer(ctx, p, kind); c != nil {
			ctrs = append(ctrs, c)
		}
	}
	for _, c := range ctrs {
		switch {
		case !c.started:
		case c.kind == kindSleeper:
			w.execCheck(ctx, c)
		default:
			w.d.checkExit(ctx, c)
		}
	}
	if w.d.stop.Load() {
		w.d.j.update(func() { p.keeper = true })
		return
	}
	for _, c := range ctrs {
		if w.rng.IntN(2) == 0 {
			w.stopRemove(ctx, c)
		}
	}
	w.removePod(ctx, p)
}

// execCheck runs ExecSync a few times: a success must carry the command's output.
func (w *worker) execCheck(ctx context.Context, c *ctrRec) {
	for i := 0; i < 1+w.rng.IntN(3); i++ {
		token := fmt.Sprintf("tok%d", w.rng.Int64())
		var resp *runtimeapi.ExecSyncResponse
		err := w.d.call(ctx, "ExecSync", 10*time.Second, false, func(cc context.Context) error {
			var err error
			resp, err = w.d.e.agent.rt().ExecSync(cc, &runtimeapi.ExecSyncRequest{ContainerId: c.id, Cmd: []string{"echo", token}, Timeout: 10})
			return err
		})
		if err == nil && (resp.ExitCode != 0 || strings.TrimSpace(string(resp.Stdout)) != token) && !w.d.j.isShimKilled(c.pod) {
			w.d.t.problem("loss", "exec-output", "container %s: exec echo %s gave exit %d stdout %q", c.id, token, resp.ExitCode, resp.Stdout)
		}
	}
}

func (w *worker) stopRemove(ctx context.Context, c *ctrRec) {
	w.d.j.update(func() { c.removeTried = true })
	err := w.d.call(ctx, "StopContainer", time.Minute, true, func(cc context.Context) error {
		_, err := w.d.e.agent.rt().StopContainer(cc, &runtimeapi.StopContainerRequest{ContainerId: c.id, Timeout: 2})
		return err
	})
	if err != nil {
		return
	}
	w.d.j.update(func() { c.stopped = true })
	err = w.d.call(ctx, "RemoveContainer", time.Minute, true, func(cc context.Context) error {
		_, err := w.d.e.agent.rt().RemoveContainer(cc, &runtimeapi.RemoveContainerRequest{ContainerId: c.id})
		return err
	})
	if err == nil {
		w.d.j.update(func() { c.removed = true })
	}
}

func (w *worker) removePod(ctx context.Context, p *podRec) {
	w.d.j.update(func() {
		p.removeTried = true
		for _, c := range w.d.j.ctrs {
			if c.pod == p.id {
				c.removeTried = true
			}
		}
	})
	err := w.d.call(ctx, "StopPodSandbox", 2*time.Minute, true, func(cc context.Context) error {
		_, err := w.d.e.agent.rt().StopPodSandbox(cc, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
		return err
	})
	if err != nil {
		return
	}
	err = w.d.call(ctx, "RemovePodSandbox", 2*time.Minute, true, func(cc context.Context) error {
		_, err := w.d.e.agent.rt().RemovePodSandbox(cc, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
		return err
	})
	if err == nil {
		w.d.j.update(func() {
			p.removed = true
			for _, c := range w.d.j.ctrs {
				if c.pod == p.id {
					c.removed = true
				}
			}
		})
	}
}

// imageOps pulls the worker's own image through the proxy and sometimes removes it.
func (w *worker) imageOps(ctx context.Context) {
	ref := fmt.Sprintf("%s/berth/pad:w%d", w.d.e.proxy.addr(), w.n)
	err := w.d.call(ctx, "PullImage", time.Minute, true, func(cc context.Context) error {
		_, err := w.d.e.agent.img().PullImage(cc, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	})
	w.d.j.setImage(ref, err, imgPresent)
	if w.rng.IntN(2) == 0 {
		return
	}
	err = w.d.call(ctx, "RemoveImage", time.Minute, true, func(cc context.Context) error {
		_, err := w.d.e.agent.img().RemoveImage(cc, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		return err
	})
	w.d.j.setImage(ref, err, imgAbsent)
}

// setImage records the outcome of a pull (want imgPresent) or remove (imgAbsent).
func (j *journal) setImage(ref string, err error, want string) {
	j.update(func() {
		if err != nil {
			want = imgUnknown
		}
		j.images[ref] = want
	})
}

func pullRequest(ref string) *runtimeapi.PullImageRequest {
	return &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}}
}
