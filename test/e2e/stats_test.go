package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// fastStats samples every second so that tests see CPU rates and layer growth quickly.
const fastStats = "[metrics]\nstats_period = \"1s\"\n"

// poll retries fn until it returns nil or the timeout passes.
func poll(t *testing.T, timeout time.Duration, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %v", timeout, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestStatsContainerAndPod(t *testing.T) {
	a := newAgent(t, agentOptions{config: fastStats})
	p := runPod(t, a, podConfig(t, "stats"))
	// 8 MiB in the writable layer, then a busy loop for CPU.
	id := runContainer(t, a, p, ctrConfig("busy", env.images.busybox,
		withShell("dd if=/dev/zero of=/data bs=1M count=8 2>/dev/null; while :; do :; done")))

	poll(t, 30*time.Second, func() error {
		resp, err := a.rt.ContainerStats(ctxT(t), &runtimeapi.ContainerStatsRequest{ContainerId: id})
		if err != nil {
			return err
		}
		s := resp.Stats
		switch {
		case s.GetAttributes().GetId() != id || s.GetAttributes().GetMetadata().GetName() != "busy":
			return fmt.Errorf("attributes %v", s.GetAttributes())
		case s.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0:
			return fmt.Errorf("no cpu usage: %v", s.GetCpu())
		case s.GetCpu().GetUsageNanoCores().GetValue() < 1e8:
			// A busy loop uses about one core; demand a tenth to tolerate a loaded host.
			return fmt.Errorf("usage_nano_cores %d for a busy loop", s.GetCpu().GetUsageNanoCores().GetValue())
		case s.GetMemory().GetWorkingSetBytes() == nil || s.GetMemory().GetUsageBytes().GetValue() == 0:
			return fmt.Errorf("memory %v", s.GetMemory())
		case s.GetMemory().GetPageFaults().GetValue() == 0:
			return fmt.Errorf("no page faults: %v", s.GetMemory())
		case s.GetSwap() == nil:
			return fmt.Errorf("no swap stats")
		case s.GetWritableLayer().GetUsedBytes().GetValue() < 8<<20:
			return fmt.Errorf("writable layer %v, want at least 8 MiB", s.GetWritableLayer())
		case s.GetWritableLayer().GetInodesUsed().GetValue() < 2:
			return fmt.Errorf("writable layer inodes %v", s.GetWritableLayer())
		}
		return nil
	})

	list, err := a.rt.ListContainerStats(ctxT(t), &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{PodSandboxId: p.id}})
	must(t, err, "list container stats")
	if len(list.Stats) != 1 || list.Stats[0].Attributes.Id != id {
		t.Fatalf("list container stats of the pod = %v, want only %s", list.Stats, id)
	}
	none, err := a.rt.ListContainerStats(ctxT(t), &runtimeapi.ListContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{LabelSelector: map[string]string{"no": "such"}}})
	must(t, err, "list container stats by label")
	if len(none.Stats) != 0 {
		t.Fatalf("label filter matched %d containers", len(none.Stats))
	}
	stream, err := a.rt.StreamContainerStats(ctxT(t), &runtimeapi.StreamContainerStatsRequest{Filter: &runtimeapi.ContainerStatsFilter{Id: id}})
	must(t, err, "stream container stats")
	var streamed []*runtimeapi.ContainerStats
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		must(t, err, "receive container stats")
		streamed = append(streamed, r.ContainerStats...)
	}
	if len(streamed) != 1 || streamed[0].Attributes.Id != id {
		t.Fatalf("streamed %v, want %s once", streamed, id)
	}

	poll(t, 30*time.Second, func() error {
		resp, err := a.rt.PodSandboxStats(ctxT(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: p.id})
		if err != nil {
			return err
		}
		lx := resp.Stats.GetLinux()
		switch {
		case resp.Stats.GetAttributes().GetId() != p.id:
			return fmt.Errorf("attributes %v", resp.Stats.GetAttributes())
		case lx.GetCpu().GetUsageCoreNanoSeconds().GetValue() == 0:
			return fmt.Errorf("pod cpu %v", lx.GetCpu())
		case lx.GetMemory().GetWorkingSetBytes() == nil:
			return fmt.Errorf("pod memory %v", lx.GetMemory())
		case lx.GetProcess().GetProcessCount().GetValue() < 2:
			// The container's shell and dd or the loop; the pod cgroup counts them all.
			if lx.GetProcess().GetProcessCount().GetValue() < 1 {
				return fmt.Errorf("pod process count %v", lx.GetProcess())
			}
		case lx.GetNetwork().GetTimestamp() == 0:
			return fmt.Errorf("no network stats for a pod with its own netns")
		case len(lx.GetContainers()) != 1 || lx.GetContainers()[0].GetAttributes().GetId() != id:
			return fmt.Errorf("pod containers %v", lx.GetContainers())
		}
		if d := lx.GetNetwork().GetDefaultInterface(); d != nil && (d.Name == "" || d.RxBytes == nil || d.TxBytes == nil) {
			return fmt.Errorf("default interface %v", d)
		}
		return nil
	})
	pods, err := a.rt.ListPodSandboxStats(ctxT(t), &runtimeapi.ListPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: p.id}})
	must(t, err, "list pod stats")
	if len(pods.Stats) != 1 {
		t.Fatalf("list pod stats by id = %d items", len(pods.Stats))
	}
	podStream, err := a.rt.StreamPodSandboxStats(ctxT(t), &runtimeapi.StreamPodSandboxStatsRequest{Filter: &runtimeapi.PodSandboxStatsFilter{Id: p.id}})
	must(t, err, "stream pod stats")
	var streamedPods []*runtimeapi.PodSandboxStats
	for {
		r, err := podStream.Recv()
		if err == io.EOF {
			break
		}
		must(t, err, "receive pod stats")
		streamedPods = append(streamedPods, r.PodSandboxStats...)
	}
	if len(streamedPods) != 1 || streamedPods[0].GetAttributes().GetId() != p.id ||
		len(streamedPods[0].GetLinux().GetContainers()) != 1 {
		t.Fatalf("streamed pod stats %v, want %s once with its container", streamedPods, p.id)
	}
}

func TestStatsUnknownIDsAreNotFound(t *testing.T) {
	a := newAgent(t, agentOptions{})
	_, err := a.rt.ContainerStats(ctxT(t), &runtimeapi.ContainerStatsRequest{ContainerId: "nonexistent"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("ContainerStats(unknown) = %v, want NotFound", err)
	}
	_, err = a.rt.PodSandboxStats(ctxT(t), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nonexistent"})
	if status.Code(err) != codes.NotFound {
		t.Errorf("PodSandboxStats(unknown) = %v, want NotFound", err)
	}
}

func TestMetricsPodSandboxMetrics(t *testing.T) {
	a := newAgent(t, agentOptions{config: fastStats})
	p := runPod(t, a, podConfig(t, "metrics"))
	id := runContainer(t, a, p, ctrConfig("m", env.images.busybox, withMemoryLimit(64<<20),
		withShell("echo hi > /f; while :; do :; done")))

	descResp, err := a.rt.ListMetricDescriptors(ctxT(t), &runtimeapi.ListMetricDescriptorsRequest{})
	must(t, err, "list metric descriptors")
	descs := map[string]*runtimeapi.MetricDescriptor{}
	for _, d := range descResp.Descriptors {
		if d.Help == "" || len(d.LabelKeys) == 0 {
			t.Errorf("descriptor %s lacks help or labels", d.Name)
		}
		descs[d.Name] = d
	}
	for _, want := range []string{
		"container_cpu_usage_seconds_total", "container_memory_working_set_bytes", "container_memory_usage_bytes",
		"container_memory_rss", "container_spec_memory_limit_bytes", "container_network_receive_bytes_total",
		"container_network_transmit_bytes_total", "container_processes", "container_oom_events_total", "container_fs_usage_bytes",
	} {
		if descs[want] == nil {
			t.Errorf("no descriptor %s", want)
		}
	}

	poll(t, 30*time.Second, func() error {
		resp, err := a.rt.ListPodSandboxMetrics(ctxT(t), &runtimeapi.ListPodSandboxMetricsRequest{})
		if err != nil {
			return err
		}
		var pm *runtimeapi.PodSandboxMetrics
		for _, m := range resp.PodMetrics {
			if m.PodSandboxId == p.id {
				pm = m
			}
		}
		if pm == nil {
			return fmt.Errorf("no metrics for pod %s", p.id)
		}
		got := map[string]*runtimeapi.Metric{}
		all := append([]*runtimeapi.Metric{}, pm.Metrics...)
		for _, cm := range pm.ContainerMetrics {
			if cm.ContainerId == id {
				all = append(all, cm.Metrics...)
			}
		}
		for _, m := range all {
			d := descs[m.Name]
			if d == nil {
				return fmt.Errorf("metric %s has no descriptor", m.Name)
			}
			if len(m.LabelValues) != len(d.LabelKeys) {
				return fmt.Errorf("metric %s has %d label values for %d keys", m.Name, len(m.LabelValues), len(d.LabelKeys))
			}
			got[m.Name] = m
		}
		for name, min := range map[string]uint64{
			"container_memory_working_set_bytes": 1, "container_processes": 1,
			"container_spec_memory_limit_bytes": 64 << 20, "container_fs_usage_bytes": 1,
		} {
			if got[name].GetValue().GetValue() < min {
				return fmt.Errorf("%s = %v, want at least %d", name, got[name], min)
			}
		}
		if m := got["container_cpu_usage_seconds_total"]; m == nil || m.LabelValues[0] != "m" || m.LabelValues[1] != id {
			return fmt.Errorf("cpu metric %v: labels should start with container name and id", m)
		}
		return nil
	})

	// The streamed form carries the same pods and containers as the list.
	stream, err := a.rt.StreamPodSandboxMetrics(ctxT(t), &runtimeapi.StreamPodSandboxMetricsRequest{})
	must(t, err, "stream pod metrics")
	var streamed []*runtimeapi.PodSandboxMetrics
	for {
		r, err := stream.Recv()
		if err == io.EOF {
			break
		}
		must(t, err, "receive pod metrics")
		streamed = append(streamed, r.PodSandboxMetrics...)
	}
	if len(streamed) != 1 || streamed[0].PodSandboxId != p.id ||
		len(streamed[0].ContainerMetrics) != 1 || streamed[0].ContainerMetrics[0].ContainerId != id ||
		len(streamed[0].ContainerMetrics[0].Metrics) == 0 {
		t.Fatalf("streamed pod metrics %v, want pod %s with metrics of container %s", streamed, p.id, id)
	}
}

// TestOOM checks that OOMKilled is reported only when the container's main process was
// killed by the OOM killer.
func TestOOM(t *testing.T) {
	a := newAgent(t, agentOptions{})
	p := runPod(t, a, podConfig(t, "oom"))
	tests := []struct {
		name     string
		script   string
		stop     bool
		wantCode int32
		wantOOM  bool
	}{
		// tail keeps the whole endless "line" of /dev/zero in memory.
		{name: "main process", script: "exec tail /dev/zero", wantCode: 137, wantOOM: true},
		{name: "child then exit 0", script: "tail /dev/zero; sleep 0.2; exit 0", wantCode: 0},
		{name: "child then stopped", script: "tail /dev/zero; echo survived; while :; do sleep 0.1; done", stop: true, wantCode: 137},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ctrConfig(fmt.Sprintf("oom%d", i), env.images.busybox, withMemoryLimit(32<<20), withShell(tt.script))
			id := runContainer(t, a, p, cfg)
			if tt.stop {
				waitLog(t, filepath.Join(p.cfg.LogDirectory, cfg.LogPath), "survived", 30*time.Second)
				// sh as PID 1 ignores SIGTERM: the stop escalates to SIGKILL, which is not an OOM kill.
				_, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 1})
				must(t, err, "stop container")
			}
			st := waitExited(t, a, id, 60*time.Second)
			if st.ExitCode != tt.wantCode {
				t.Errorf("exit code %d, want %d (reason %s)", st.ExitCode, tt.wantCode, st.Reason)
			}
			if got := st.Reason == "OOMKilled"; got != tt.wantOOM {
				t.Errorf("reason %q, want OOMKilled=%v", st.Reason, tt.wantOOM)
			}
		})
	}
}

// TestEventsLifecycles subscribes to GetContainerEvents and runs 100 container lifecycles,
// some exiting by themselves and some stopped, four at a time; every container must produce
// exactly CREATED, STARTED, STOPPED, DELETED in that order, and the pod its own four.
func TestEventsLifecycles(t *testing.T) {
	a := newAgent(t, agentOptions{})
	ctx, cancel := context.WithCancel(ctxT(t))
	defer cancel()
	stream, err := a.rt.GetContainerEvents(ctx, &runtimeapi.GetEventsRequest{})
	must(t, err, "get container events")

	var mu sync.Mutex
	events := map[string][]runtimeapi.ContainerEventType{}
	recvErr := make(chan error, 1)
	go func() {
		for {
			ev, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			if ev.PodSandboxStatus == nil || ev.PodSandboxStatus.Metadata == nil {
				recvErr <- fmt.Errorf("event %v without pod sandbox status", ev)
				return
			}
			if ev.ContainerEventType == runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT && ev.ContainerId != ev.PodSandboxStatus.Id {
				if st := findStatus(ev.ContainersStatuses, ev.ContainerId); st == nil || st.State != runtimeapi.ContainerState_CONTAINER_EXITED {
					recvErr <- fmt.Errorf("STOPPED event of %s carries status %v", ev.ContainerId, st)
					return
				}
			}
			mu.Lock()
			events[ev.ContainerId] = append(events[ev.ContainerId], ev.ContainerEventType)
			mu.Unlock()
		}
	}()
	// Give the subscription time to register before the first change.
	time.Sleep(200 * time.Millisecond)

	cfg := podConfig(t, "events")
	p := runPod(t, a, cfg)
	pull(t, a, env.images.busybox)
	const n, workers = 100, 4
	ids := make(chan string, n)
	var wg sync.WaitGroup
	jobs := make(chan int)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				ids <- lifecycle(t, a, p, i)
			}
		}()
	}
	for i := 0; i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(ids)
	_, err = a.rt.StopPodSandbox(ctxT(t), &runtimeapi.StopPodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "stop pod")
	_, err = a.rt.RemovePodSandbox(ctxT(t), &runtimeapi.RemovePodSandboxRequest{PodSandboxId: p.id})
	must(t, err, "remove pod")

	want := []runtimeapi.ContainerEventType{
		runtimeapi.ContainerEventType_CONTAINER_CREATED_EVENT, runtimeapi.ContainerEventType_CONTAINER_STARTED_EVENT,
		runtimeapi.ContainerEventType_CONTAINER_STOPPED_EVENT, runtimeapi.ContainerEventType_CONTAINER_DELETED_EVENT,
	}
	all := append([]string{p.id}, drain(ids)...)
	poll(t, 30*time.Second, func() error {
		select {
		case err := <-recvErr:
			t.Fatalf("event stream: %v", err)
		default:
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range all {
			if len(events[id]) < len(want) {
				return fmt.Errorf("%s: %d of %d events so far: %v", id, len(events[id]), len(want), events[id])
			}
		}
		return nil
	})
	mu.Lock()
	defer mu.Unlock()
	for _, id := range all {
		if fmt.Sprint(events[id]) != fmt.Sprint(want) {
			t.Errorf("%s: events %v, want %v", id, events[id], want)
		}
	}
	if len(events) != len(all) {
		t.Errorf("events for %d objects, want %d", len(events), len(all))
	}
}

// lifecycle runs one container to its removal: even ones exit by themselves, odd ones are stopped.
func lifecycle(t *testing.T, a *agent, p pod, i int) string {
	script := "exit 0"
	if i%2 == 1 {
		script = "exec sleep 60"
	}
	cfg := ctrConfig(fmt.Sprintf("c%d", i), env.images.busybox, withShell(script))
	id := runContainer(t, a, p, cfg)
	if i%2 == 1 {
		_, err := a.rt.StopContainer(ctxT(t), &runtimeapi.StopContainerRequest{ContainerId: id, Timeout: 0})
		must(t, err, "stop %s", id)
	} else if i%4 == 0 {
		waitExited(t, a, id, 30*time.Second)
	}
	// The rest are removed without waiting: removal races with the exit watcher.
	_, err := a.rt.RemoveContainer(ctxT(t), &runtimeapi.RemoveContainerRequest{ContainerId: id})
	must(t, err, "remove %s", id)
	return id
}

func findStatus(sts []*runtimeapi.ContainerStatus, id string) *runtimeapi.ContainerStatus {
	for _, s := range sts {
		if s.Id == id {
			return s
		}
	}
	return nil
}

func drain(ch <-chan string) []string {
	var out []string
	for s := range ch {
		out = append(out, s)
	}
	return out
}

func TestMetricsPrometheusEndpoint(t *testing.T) {
	a := newAgent(t, agentOptions{config: "[metrics]\naddress = \"127.0.0.1:0\"\n"})
	p := runPod(t, a, podConfig(t, "prom"))
	runContainer(t, a, p, ctrConfig("c", env.images.busybox, withShell("exec sleep 60")))
	_, _ = a.rt.ContainerStatus(ctxT(t), &runtimeapi.ContainerStatusRequest{ContainerId: "nonexistent"})

	b, err := os.ReadFile(filepath.Join(a.state, "metrics.addr"))
	must(t, err, "read metrics address")
	addr := strings.TrimSpace(string(b))
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("metrics address %q is not loopback", addr)
	}
	body := httpGet(t, "http://"+addr+"/metrics")
	for _, want := range []string{
		`berth_cri_request_duration_seconds_bucket{method="/runtime.v1.RuntimeService/RunPodSandbox"`,
		`berth_cri_request_errors_total{code="NotFound",method="/runtime.v1.RuntimeService/ContainerStatus"} 1`,
		`berth_image_pull_duration_seconds_count{outcome="success"} 1`,
		`berth_pods{state="ready"} 1`,
		`berth_containers{state="running"} 1`,
		`berth_image_pull_bytes_total `,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if !strings.Contains(httpGet(t, "http://"+addr+"/debug/pprof/"), "goroutine") {
		t.Error("/debug/pprof/ is not served")
	}
}

func TestMetricsOffByDefault(t *testing.T) {
	a := newAgent(t, agentOptions{})
	if _, err := os.Stat(filepath.Join(a.state, "metrics.addr")); !os.IsNotExist(err) {
		t.Fatalf("metrics address file exists without [metrics] address: %v", err)
	}
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	must(t, err, "GET %s", url)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err, "read %s", url)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}
