// Command chaos churns pods and containers on a berth agent of its own while it kills the
// agent, shims and CNI plugins at random instants and injects faults (a failing or hanging
// CNI plugin, a full root filesystem, a registry that stalls, drops or corrupts blobs), then
// checks that every RPC that returned success is reflected in the agent's state, no exit
// code, OOM reason or log line is lost, and that after removing everything nothing is left.
//
//	go run ./hack/chaos [--short] [--seed N] [--agent-kills N] [--workers N]
//
// It prints its seed (--seed replays the same decisions), a table of operations, kills,
// faults, losses and leaks, and exits non-zero if any loss or leak count is non-zero.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

func main() {
	if filepath.Base(os.Args[0]) == faultPluginName {
		os.Exit(pluginMain())
	}
	os.Exit(mainCode())
}

type options struct {
	seed        uint64
	short       bool
	agentKills  int
	workers     int
	maxDuration time.Duration
	minGap      time.Duration
	maxGap      time.Duration
	moduleRoot  string
}

func parseFlags() options {
	var o options
	flag.Uint64Var(&o.seed, "seed", 0, "random seed (0: from the clock); printed, to replay a run")
	flag.BoolVar(&o.short, "short", false, "CI run: about 12 agent kills in 2-3 minutes")
	flag.IntVar(&o.agentKills, "agent-kills", 0, "agent kills before the churn ends (default 12 short, 200 long)")
	flag.IntVar(&o.workers, "workers", 4, "concurrent churn workers")
	flag.DurationVar(&o.maxDuration, "max-duration", 0, "end the churn after this long even if the kills are not done (default 4m short, 40m long)")
	flag.StringVar(&o.moduleRoot, "module-root", ".", "berth's module root, to build the binaries unless $BERTH_BIN and $BERTH_SHIM_BIN are set")
	flag.Parse()
	if o.seed == 0 {
		o.seed = uint64(time.Now().UnixNano())
	}
	o.minGap, o.maxGap = 1500*time.Millisecond, 3500*time.Millisecond
	if o.short {
		o.minGap, o.maxGap = 3*time.Second, 7*time.Second
	}
	if o.agentKills == 0 {
		o.agentKills = map[bool]int{true: 12, false: 200}[o.short]
	}
	if o.maxDuration == 0 {
		o.maxDuration = map[bool]time.Duration{true: 4 * time.Minute, false: 40 * time.Minute}[o.short]
	}
	return o
}

func mainCode() int {
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "chaos: runs real containers, mounts and network namespaces: needs root")
		return 2
	}
	o := parseFlags()
	fmt.Printf("chaos: seed %d (replay with --seed %d)\n", o.seed, o.seed)
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer cancel()

	start := time.Now()
	e, err := setup(o.moduleRoot)
	defer e.undo.Run()
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos: setup:", err)
		return 1
	}
	fmt.Printf("chaos: agent root %s (loop ext4 %s), state %s, bridge %s\n", e.agent.a.Root, rootImageSize, e.agent.a.State, e.bridge)
	d := &driver{e: e, t: newTally(), j: newJournal()}
	if err := d.prepare(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: prepare:", err)
		return 1
	}
	d.churn(ctx, o)
	fmt.Printf("chaos: churn done after %s; verifying\n", time.Since(start).Round(time.Second))
	code := d.finish(ctx)
	d.t.print(os.Stdout, map[string][]string{
		"loss": {"agent-restart", "exit-code", "exit-not-reported", "oom-reason", "log-lines", "exec-output", "pod-state",
			"container-state", "container-record", "stop-not-reflected", "not-running", "image-state", "corrupt-blob-accepted", "pull-after-fault"},
		"leak": leakChecks,
	})
	fmt.Printf("chaos: seed %d, %s, losses %d, leaks %d\n", o.seed, time.Since(start).Round(time.Second), d.t.sum("loss"), d.t.sum("leak"))
	if code == 0 && d.t.sum("loss")+d.t.sum("leak") > 0 {
		code = 1
	}
	if code != 0 {
		e.keepLog = fmt.Sprintf("/var/tmp/berth-chaos-%d-agent.log", o.seed)
	}
	return code
}

// prepare pulls busybox and pushes each worker's own image.
func (d *driver) prepare(ctx context.Context) error {
	for w := 0; w < 8; w++ {
		if _, err := d.e.pushPadded(fmt.Sprintf("berth/pad:w%d", w), int64(512<<10+w)); err != nil {
			return err
		}
	}
	_, err := d.e.agent.img().PullImage(ctx, pullRequest(d.e.busybox))
	return err
}

// churn runs the workers, the killer and the faulter until the killer is done.
func (d *driver) churn(ctx context.Context, o options) {
	cctx, cancel := context.WithTimeout(ctx, o.maxDuration)
	defer cancel()
	fctx, stopFaults := context.WithCancel(cctx)
	var wg sync.WaitGroup
	for i := 0; i < o.workers; i++ {
		w := &worker{d: d, n: i, rng: rand.New(rand.NewPCG(o.seed, uint64(i+1)))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer d.recoverPanic("worker")
			w.run(ctx)
		}()
	}
	var fwg sync.WaitGroup
	fwg.Add(1)
	go func() {
		defer fwg.Done()
		defer d.recoverPanic("faulter")
		d.faulter(fctx, rand.New(rand.NewPCG(o.seed, 100)))
	}()
	d.killer(cctx, rand.New(rand.NewPCG(o.seed, 200)), o.agentKills, o.minGap, o.maxGap)
	stopFaults()
	fwg.Wait()
	_ = d.e.setPlugin(pluginOK)
	d.e.proxy.set(regOK)
	if err := d.e.agent.ensureUp(); err != nil {
		d.t.problem("loss", "agent-restart", "%v", err)
	}
	d.stop.Store(true)
	wg.Wait()
}

// recoverPanic turns a panic of a driver goroutine into a counted failure, so that the run
// still tears down what it set up.
func (d *driver) recoverPanic(who string) {
	if r := recover(); r != nil {
		d.t.problem("loss", "driver-panic", "%s: %v", who, r)
	}
}

// finish checks the journal against the agent, removes everything, stops the agent and
// counts what is left.
func (d *driver) finish(ctx context.Context) int {
	vctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	code := 0
	if err := d.verifyState(vctx); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: verify:", err)
		code = 1
	}
	// A removal the agent refuses is itself a leak; the leak checks still run.
	if err := d.removeEverything(vctx); err != nil {
		d.t.problem("leak", "pod-record", "remove everything: %v", err)
	}
	if err := d.e.agent.a.Stop(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: stop agent:", err)
	}
	d.checkLeaks()
	return code
}
