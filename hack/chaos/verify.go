package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// checkExit waits for a started container to exit and compares what the agent reports with
// what it was made to do; a logger's log must hold every line exactly once.
func (d *driver) checkExit(ctx context.Context, c *ctrRec) {
	var st *runtimeapi.ContainerStatus
	end := time.Now().Add(2 * time.Minute)
	for time.Now().Before(end) && ctx.Err() == nil {
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := d.e.agent.rt().ContainerStatus(cctx, &runtimeapi.ContainerStatusRequest{ContainerId: c.id})
		cancel()
		if status.Code(err) == codes.NotFound {
			d.t.problem("loss", "container-record", "started container %s: status NotFound", c.id)
			return
		}
		if err == nil && resp.Status.State == runtimeapi.ContainerState_CONTAINER_EXITED {
			st = resp.Status
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if d.j.isShimKilled(c.pod) {
		d.t.inc("check", "skipped: shim killed")
		return
	}
	if st == nil {
		d.t.problem("loss", "exit-not-reported", "container %s (%s) did not exit within 2m", c.id, c.kind)
		return
	}
	d.t.inc("check", "exit "+c.kind)
	if st.ExitCode != c.wantCode {
		d.t.problem("loss", "exit-code", "container %s (%s): exit %d reason %q message %q, want %d", c.id, c.kind, st.ExitCode, st.Reason, st.Message, c.wantCode)
	}
	if (st.Reason == "OOMKilled") != (c.kind == kindOOM) {
		d.t.problem("loss", "oom-reason", "container %s (%s): reason %q", c.id, c.kind, st.Reason)
	}
	if c.kind == kindLogger {
		d.checkLog(c)
	}
}

// checkLog reads a logger's CRI log: lines L1..Ln, each exactly once.
func (d *driver) checkLog(c *ctrRec) {
	var dir string
	d.j.update(func() { dir = d.j.pods[c.pod].logDir })
	f, err := os.Open(filepath.Join(dir, c.logPath))
	if err != nil {
		d.t.problem("loss", "log-lines", "container %s: %v", c.id, err)
		return
	}
	defer f.Close()
	seen := make([]int, c.lines+1)
	var partial strings.Builder
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// <timestamp> <stream> <P|F> <content>
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 {
			d.t.problem("loss", "log-lines", "container %s: malformed log line %q", c.id, sc.Text())
			return
		}
		content := ""
		if len(parts) == 4 {
			content = parts[3]
		}
		partial.WriteString(content)
		if parts[2] == "P" {
			continue
		}
		line := partial.String()
		partial.Reset()
		n, err := strconv.Atoi(strings.TrimPrefix(line, "L"))
		if err != nil || n < 1 || n > c.lines {
			d.t.problem("loss", "log-lines", "container %s: unexpected line %q", c.id, line)
			continue
		}
		seen[n]++
	}
	missing, dup := 0, 0
	for i := 1; i <= c.lines; i++ {
		switch {
		case seen[i] == 0:
			missing++
		case seen[i] > 1:
			dup++
		}
	}
	d.t.add("check", "log lines", c.lines)
	if missing > 0 || dup > 0 {
		d.t.problem("loss", "log-lines", "container %s: %d of %d lines missing, %d duplicated", c.id, missing, c.lines, dup)
	}
}

// verifyState compares the journal with the agent's lists once the churn is over.
func (d *driver) verifyState(ctx context.Context) error {
	rt, img := d.e.agent.rt(), d.e.agent.img()
	pods, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return fmt.Errorf("list pods: %w", err)
	}
	ctrs, err := rt.ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err != nil {
		return fmt.Errorf("list containers: %w", err)
	}
	imgs, err := img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	havePod := map[string]bool{}
	for _, p := range pods.Items {
		havePod[p.Id] = true
		d.j.update(func() { d.j.everPods[p.Id] = true })
	}
	haveCtr := map[string]*runtimeapi.Container{}
	for _, c := range ctrs.Containers {
		haveCtr[c.Id] = c
	}
	haveImg := map[string]bool{}
	for _, im := range imgs.Images {
		for _, t := range im.RepoTags {
			haveImg[t] = true
		}
	}
	d.j.mu.Lock()
	defer d.j.mu.Unlock()
	for id, p := range d.j.pods {
		// Created and never a removal tried: listed. Removed with success: not listed.
		if (p.removed && havePod[id]) || (!p.removeTried && !havePod[id]) {
			d.t.problem("loss", "pod-state", "pod %s (%s): removed=%v but listed=%v", id, p.name, p.removed, havePod[id])
		}
		d.t.inc("check", "pod state")
	}
	for id, c := range d.j.ctrs {
		got := haveCtr[id]
		d.t.inc("check", "container state")
		if (c.removed && got != nil) || (!c.removeTried && got == nil) {
			d.t.problem("loss", "container-state", "container %s (%s): removed=%v but listed=%v", id, c.kind, c.removed, got != nil)
			continue
		}
		if got == nil || d.j.shimKilled[c.pod] {
			continue
		}
		if c.stopped && got.State != runtimeapi.ContainerState_CONTAINER_EXITED {
			d.t.problem("loss", "stop-not-reflected", "container %s stopped but %s", id, got.State)
		}
		if c.kind == kindSleeper && c.started && !c.stopped && d.j.pods[c.pod].keeper {
			d.t.inc("check", "keeper running")
			if got.State != runtimeapi.ContainerState_CONTAINER_RUNNING {
				d.t.problem("loss", "not-running", "container %s should run but is %s", id, got.State)
			}
		}
	}
	for ref, state := range d.j.images {
		if state == imgUnknown {
			continue
		}
		d.t.inc("check", "image state")
		if (state == imgPresent) != haveImg[ref] {
			d.t.problem("loss", "image-state", "image %s: %s after the last successful call, but listed=%v", ref, state, haveImg[ref])
		}
	}
	return nil
}

// removeAllPods stops and removes every pod the agent lists.
func removeAllPods(rt runtimeapi.RuntimeServiceClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	resp, err := rt.ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err != nil {
		return err
	}
	var first error
	for _, p := range resp.Items {
		if _, err := rt.StopPodSandbox(ctx, &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil && first == nil {
			first = fmt.Errorf("stop pod %s: %w", p.Id, err)
		}
		if _, err := rt.RemovePodSandbox(ctx, &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil && first == nil {
			first = fmt.Errorf("remove pod %s: %w", p.Id, err)
		}
	}
	return first
}

// removeEverything removes every pod and image and waits for the image GC to finish.
func (d *driver) removeEverything(ctx context.Context) error {
	if err := removeAllPods(d.e.agent.rt()); err != nil {
		return err
	}
	img := d.e.agent.img()
	imgs, err := img.ListImages(ctx, &runtimeapi.ListImagesRequest{})
	if err != nil {
		return err
	}
	for _, im := range imgs.Images {
		if _, err := img.RemoveImage(ctx, &runtimeapi.RemoveImageRequest{Image: &runtimeapi.ImageSpec{Image: im.Id}}); err != nil {
			return fmt.Errorf("remove image %s: %w", im.Id, err)
		}
	}
	snaps := filepath.Join(d.e.agent.a.Root, "images", "snapshots")
	for end := time.Now().Add(30 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if ents, _ := os.ReadDir(snaps); len(ents) == 0 {
			break
		}
	}
	// What a rollback could not release (a DEL failing under the fault plugin) the agent
	// releases in the background every 10 s: give it one pass.
	time.Sleep(12 * time.Second)
	pods, err := d.e.agent.rt().ListPodSandbox(ctx, &runtimeapi.ListPodSandboxRequest{})
	if err == nil && len(pods.Items) != 0 {
		d.t.problem("leak", "pod-record", "%d pods listed after removing all", len(pods.Items))
	}
	ctrs, err := d.e.agent.rt().ListContainers(ctx, &runtimeapi.ListContainersRequest{})
	if err == nil && len(ctrs.Containers) != 0 {
		d.t.problem("leak", "container-record", "%d containers listed after removing all", len(ctrs.Containers))
	}
	return nil
}

// leakChecks are counted with the agent stopped: the doctor's verdict, then the driver's own
// look at what the doctor cannot attribute on a shared node.
var leakChecks = []string{"doctor", "mount", "netns", "veth", "ip", "iptables", "cgroup", "process", "snapshot", "bbolt-record", "lease", "pod-record", "container-record"}

func (d *driver) checkLeaks() {
	a := d.e.agent.a
	out, err := exec.Command(d.e.berth, append(append([]string{}, a.Args...), "doctor", "--shared-node")...).CombinedOutput()
	if err != nil {
		d.t.problem("leak", "doctor", "berth doctor: %v\n%s", err, out)
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	for _, line := range strings.Split(string(mi), "\n") {
		f := strings.Fields(line)
		if len(f) < 5 {
			continue
		}
		switch mp := f[4]; {
		case strings.HasPrefix(mp, filepath.Join(a.State, "netns")+"/"):
			d.t.problem("leak", "netns", "%s", mp)
		case strings.HasPrefix(mp, a.State+"/") || strings.HasPrefix(mp, a.Root+"/"):
			d.t.problem("leak", "mount", "%s", mp)
		}
	}
	if b, err := exec.Command("ip", "-o", "link", "show", "master", d.e.bridge).Output(); err == nil {
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if l != "" {
				d.t.problem("leak", "veth", "%s", l)
			}
		}
	}
	nets, _ := filepath.Glob(filepath.Join(a.State, "cni", "networks", "*", "*"))
	for _, f := range nets {
		if b := filepath.Base(f); b != "lock" && !strings.HasPrefix(b, "last_reserved_ip") {
			d.t.problem("leak", "ip", "%s", f)
		}
	}
	rules, _ := exec.Command("iptables-save").Output()
	for _, line := range strings.Split(string(rules), "\n") {
		if d.e.ownRule(line) {
			d.t.problem("leak", "iptables", "%s", line)
		}
	}
	d.j.mu.Lock()
	for id := range d.j.everPods {
		if m, _ := filepath.Glob("/sys/fs/cgroup/*/berth/" + id); len(m) > 0 {
			d.t.problem("leak", "cgroup", "%v", m)
		}
	}
	d.j.mu.Unlock()
	for _, pid := range processesOf(a.State) {
		d.t.problem("leak", "process", "pid %d", pid)
	}
	if ents, _ := os.ReadDir(filepath.Join(a.Root, "images", "snapshots")); len(ents) > 0 {
		d.t.problem("leak", "snapshot", "%d snapshot dirs", len(ents))
	}
	d.countRecords(filepath.Join(a.Root, "cri", "meta.db"), "bbolt-record", "sandboxes", "containers", "resources")
	d.countRecords(filepath.Join(a.Root, "images", "meta.db"), "lease", "leases")
	d.countRecords(filepath.Join(a.Root, "images", "meta.db"), "bbolt-record", "images", "snapshots")
}

func (d *driver) countRecords(path, leak string, buckets ...string) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 2 * time.Second})
	if err != nil {
		d.t.problem("leak", leak, "open %s: %v", path, err)
		return
	}
	defer db.Close()
	_ = db.View(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			bk := tx.Bucket([]byte(b))
			if bk == nil {
				continue
			}
			if n := bk.Stats().KeyN; n > 0 {
				d.t.problem("leak", leak, "%s: %d records in %s", filepath.Base(filepath.Dir(path)), n, b)
			}
		}
		return nil
	})
}
