package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// nodeName is hack/cluster.sh's node on the host (CLUSTER_NODE_NAME); extra nodes are
// <nodeName>-2..N.
var nodeName = envOr("CLUSTER_NODE_NAME", "berth-node")

// summary is what the test reads of the kubelet's /stats/summary.
type summary struct {
	Pods []struct {
		PodRef struct {
			Name      string `json:"name"`
			Namespace string `json:"namespace"`
		} `json:"podRef"`
		Containers []struct {
			Name   string      `json:"name"`
			CPU    *summaryCPU `json:"cpu"`
			Memory *summaryMem `json:"memory"`
			Rootfs *summaryFs  `json:"rootfs"`
			Logs   *summaryFs  `json:"logs"`
		} `json:"containers"`
		CPU    *summaryCPU `json:"cpu"`
		Memory *summaryMem `json:"memory"`
	} `json:"pods"`
}

type summaryCPU struct {
	Time                 time.Time `json:"time"`
	UsageCoreNanoSeconds *uint64   `json:"usageCoreNanoSeconds"`
}

type summaryMem struct {
	Time            time.Time `json:"time"`
	UsageBytes      *uint64   `json:"usageBytes"`
	WorkingSetBytes *uint64   `json:"workingSetBytes"`
}

type summaryFs struct {
	UsedBytes *uint64 `json:"usedBytes"`
}

// TestStatsSummary: the kubelet's summary API, read through the API server's node proxy,
// reports a pod's and its container's cpu and memory. The kubelet 1.37 takes container
// cpu, memory and writable layer from the runtime's ListContainerStats (cAdvisor cannot
// name berth's containers); ListPodSandboxStats only behind the PodAndContainerStatsFromCRI
// gate, off by default, so the pod's totals come from cAdvisor's view of the pod cgroup (zero
// until its first housekeeping of the new cgroup, some 15-20 s: the wait covers it).
// The container's counters lie between two readings of berth's CRI stats taken around the
// summary: they are berth's.
func TestStatsSummary(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	// Some CPU time, and 8 MB in the pod's /dev/shm (tmpfs: charged to the container, in its
	// working set).
	runPod(t, ns, "busy", busybox,
		`head -c 8000000 /dev/zero > /dev/shm/fill; i=0; while [ $i -lt 100000 ]; do i=$((i+1)); done; `+stopOnTerm)
	ctrs := criContainers(t, ns)
	if len(ctrs) != 1 {
		t.Fatalf("berth has %d containers in %s, want 1", len(ctrs), ns)
	}
	id := ctrs[0].Id
	waitFor(t, 2*time.Minute, "the pod in the kubelet's summary with cpu and memory", func() error {
		before := criStats(t, id)
		s, err := podSummary(t, ns, "busy")
		if err != nil {
			return err
		}
		after := criStats(t, id)
		return checkSummary(s, before, after)
	})
}

// podSummary reads the summary and returns the pod's entry, as a JSON document of one pod.
func podSummary(t *testing.T, ns, name string) (*summary, error) {
	t.Helper()
	out, err := kubectl(t, "get", "--raw", "/api/v1/nodes/"+nodeName+"/proxy/stats/summary")
	if err != nil {
		return nil, err
	}
	var all summary
	if err := json.Unmarshal([]byte(out), &all); err != nil {
		return nil, fmt.Errorf("decode summary: %w", err)
	}
	for _, p := range all.Pods {
		if p.PodRef.Namespace == ns && p.PodRef.Name == name {
			one := summary{Pods: all.Pods[:0:0]}
			one.Pods = append(one.Pods, p)
			return &one, nil
		}
	}
	return nil, fmt.Errorf("pod %s/%s not in the summary", ns, name)
}

// checkSummary: the pod has cpu and memory; its container's cumulative cpu and its
// memory sample lie between berth's two readings (cumulative cpu only grows; the sample
// times are the CRI's, which the kubelet passes through, to the second in JSON).
func checkSummary(s *summary, before, after *runtimeapi.ContainerStats) error {
	p := s.Pods[0]
	if p.CPU == nil || p.CPU.UsageCoreNanoSeconds == nil || *p.CPU.UsageCoreNanoSeconds == 0 {
		return fmt.Errorf("pod cpu %+v", p.CPU)
	}
	if p.Memory == nil || p.Memory.WorkingSetBytes == nil || *p.Memory.WorkingSetBytes == 0 {
		return fmt.Errorf("pod memory %+v", p.Memory)
	}
	if len(p.Containers) != 1 {
		return fmt.Errorf("%d containers in the pod's summary, want 1", len(p.Containers))
	}
	c := p.Containers[0]
	if c.CPU == nil || c.CPU.UsageCoreNanoSeconds == nil || c.Memory == nil || c.Memory.WorkingSetBytes == nil {
		return fmt.Errorf("container %s: cpu %+v memory %+v", c.Name, c.CPU, c.Memory)
	}
	if before.GetCpu() == nil || after.GetCpu() == nil || before.GetMemory() == nil || after.GetMemory() == nil {
		return fmt.Errorf("berth has no cpu or memory sample yet")
	}
	cpu := *c.CPU.UsageCoreNanoSeconds
	lo, hi := before.Cpu.UsageCoreNanoSeconds.GetValue(), after.Cpu.UsageCoreNanoSeconds.GetValue()
	if cpu == 0 || cpu < lo || cpu > hi {
		return fmt.Errorf("container cpu %d ns, berth's readings around it %d..%d", cpu, lo, hi)
	}
	at := c.CPU.Time.Unix()
	if tlo, thi := time.Unix(0, before.Cpu.Timestamp).Unix(), time.Unix(0, after.Cpu.Timestamp).Unix(); at < tlo || at > thi {
		return fmt.Errorf("container cpu sampled at %d, berth's samples at %d..%d", at, tlo, thi)
	}
	ws := *c.Memory.WorkingSetBytes
	if ws < 4<<20 {
		return fmt.Errorf("container working set %d, want the 8 MB in /dev/shm", ws)
	}
	if b, a := before.Memory.WorkingSetBytes.GetValue(), after.Memory.WorkingSetBytes.GetValue(); ws != b && ws != a {
		return fmt.Errorf("container working set %d is neither of berth's readings around it (%d, %d)", ws, b, a)
	}
	if c.Rootfs == nil || c.Rootfs.UsedBytes == nil {
		return fmt.Errorf("container rootfs %+v: berth's writable layer missing", c.Rootfs)
	}
	return nil
}

// criStats is berth's ContainerStats for id.
func criStats(t *testing.T, id string) *runtimeapi.ContainerStats {
	t.Helper()
	rt, closeFn := criClient(t)
	defer closeFn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := rt.ContainerStats(ctx, &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatalf("ContainerStats %s: %v", id, err)
	}
	return resp.Stats
}
