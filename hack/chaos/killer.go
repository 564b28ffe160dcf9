package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cniPlugins are the binaries of the chain, killed mid-call.
var cniPlugins = map[string]bool{"bridge": true, "host-local": true, "portmap": true, faultPluginName: true}

// killer sends SIGKILL to the agent (restarting it), to shims and to CNI plugins mid-call
// until it has killed the agent agentKills times.
func (d *driver) killer(ctx context.Context, rng *rand.Rand, agentKills int, minGap, maxGap time.Duration) {
	for d.t.get("kill", "agent") < agentKills && ctx.Err() == nil {
		time.Sleep(minGap + time.Duration(rng.Int64N(int64(maxGap-minGap))))
		switch r := rng.IntN(100); {
		case r < 65:
			d.killAgent(rng)
		case r < 82:
			d.killShim(rng)
		default:
			d.killPlugin(rng)
		}
	}
}

func (d *driver) killAgent(rng *rand.Rand) {
	if d.mutating.Load() > 0 {
		// A write to meta.db may be in flight: bbolt must recover from a kill mid-write.
		d.t.inc("fault", "bbolt: agent killed with a write in flight")
	}
	if err := d.e.agent.kill(); err != nil {
		fmt.Fprintln(os.Stderr, "chaos: kill agent:", err)
	}
	d.t.inc("kill", "agent")
	if n := d.t.get("kill", "agent"); n%10 == 0 {
		fmt.Printf("chaos: %d agent kills, %d pods run, %d containers started\n", n, d.t.get("op", "RunPodSandbox"), d.t.get("op", "StartContainer"))
	}
	time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
	if err := d.e.agent.launch(); err != nil {
		d.t.problem("loss", "agent-restart", "agent did not come back: %v\n%s", err, d.e.agent.a.LogTail(30))
	}
}

// shimProcs maps the pids of this agent's shims to their sandbox ids.
func (d *driver) shimProcs() map[int]string {
	out := map[int]string{}
	for _, pid := range processesMentioning(filepath.Join(d.e.agent.a.State, "shims")) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		args := strings.Split(string(b), "\x00")
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "--id" {
				out[pid] = args[i+1]
			}
		}
	}
	return out
}

func (d *driver) killShim(rng *rand.Rand) {
	procs := d.shimProcs()
	if len(procs) == 0 {
		return
	}
	pids := make([]int, 0, len(procs))
	for pid := range procs {
		pids = append(pids, pid)
	}
	pid := pids[rng.IntN(len(pids))]
	// Recorded first: the exits its containers report from now on are not the program's.
	d.j.update(func() { d.j.shimKilled[procs[pid]] = true })
	if syscall.Kill(pid, syscall.SIGKILL) == nil {
		d.t.inc("kill", "shim")
	}
}

// killPlugin waits up to 3 s for a CNI plugin the agent runs and kills it.
func (d *driver) killPlugin(rng *rand.Rand) {
	agentPid := d.e.agent.a.Pid()
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		for _, pid := range childrenOf(agentPid) {
			exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if err != nil || !cniPlugins[filepath.Base(exe)] {
				continue
			}
			if syscall.Kill(pid, syscall.SIGKILL) == nil {
				d.t.inc("kill", "cni plugin "+filepath.Base(exe))
				return
			}
		}
	}
}

func childrenOf(ppid int) []int {
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		s := string(b)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) > 1 && f[1] == strconv.Itoa(ppid) {
			out = append(out, pid)
		}
	}
	return out
}

// faulter injects one fault after another until ctx ends.
func (d *driver) faulter(ctx context.Context, rng *rand.Rand) {
	faults := []func(context.Context, *rand.Rand){d.cniFault(pluginFail), d.cniFault(pluginHang), d.diskFull,
		d.registryFault(regStall), d.registryFault(regDrop), d.registryFault(regCorrupt)}
	for i := 0; ctx.Err() == nil; i++ {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(2000+rng.IntN(3000)) * time.Millisecond):
		}
		faults[i%len(faults)](ctx, rng)
	}
}

func (d *driver) cniFault(mode string) func(context.Context, *rand.Rand) {
	return func(ctx context.Context, rng *rand.Rand) {
		if err := d.e.setPlugin(mode); err != nil {
			return
		}
		d.t.inc("fault", "cni plugin "+mode)
		sleepCtx(ctx, time.Duration(2000+rng.IntN(2000))*time.Millisecond)
		_ = d.e.setPlugin(pluginOK)
		if mode == pluginHang {
			// Plugins still hanging would hold their pods' calls for minutes.
			for _, pid := range processesMentioning(faultPluginName) {
				if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid)); filepath.Base(exe) == faultPluginName {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
}

// diskFull fills the agent's root filesystem for a few seconds.
func (d *driver) diskFull(ctx context.Context, rng *rand.Rand) {
	filler := filepath.Join(d.e.mnt, "filler")
	var st syscall.Statfs_t
	if err := syscall.Statfs(d.e.mnt, &st); err != nil {
		return
	}
	f, err := os.Create(filler)
	if err != nil {
		return
	}
	_ = syscall.Fallocate(int(f.Fd()), 0, 0, int64(st.Bavail)*st.Bsize)
	// Fill the last blocks fallocate's rounding left.
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			break
		}
	}
	f.Close()
	d.t.inc("fault", "root filesystem full")
	sleepCtx(ctx, time.Duration(2000+rng.IntN(2000))*time.Millisecond)
	os.Remove(filler)
}

// registryFault pulls a fresh image through the proxy while it damages blobs: the pull must
// fail (a corrupt blob accepted is a loss), and succeed once the registry is healthy again.
func (d *driver) registryFault(mode string) func(context.Context, *rand.Rand) {
	return func(ctx context.Context, rng *rand.Rand) {
		name := fmt.Sprintf("berth/fault:%s-%d", mode, rng.IntN(1<<30))
		ref, err := d.e.pushPadded(name, int64(256<<10+rng.IntN(64<<10)))
		if err != nil {
			return
		}
		d.e.proxy.set(mode)
		d.t.inc("fault", "registry "+mode)
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		_, err = d.e.agent.img().PullImage(pctx, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
		cancel()
		d.e.proxy.set(regOK)
		d.j.setImage(ref, err, imgPresent)
		if err == nil {
			if mode == regCorrupt {
				d.t.problem("loss", "corrupt-blob-accepted", "pull of %s succeeded with a corrupt blob", ref)
			}
			return
		}
		err = d.call(ctx, "PullImage", time.Minute, true, func(c context.Context) error {
			_, err := d.e.agent.img().PullImage(c, &runtimeapi.PullImageRequest{Image: &runtimeapi.ImageSpec{Image: ref}})
			return err
		})
		d.j.setImage(ref, err, imgPresent)
		if err != nil && ctx.Err() == nil {
			d.t.problem("loss", "pull-after-fault", "pull of %s after the %s fault: %v", ref, mode, err)
		}
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}
