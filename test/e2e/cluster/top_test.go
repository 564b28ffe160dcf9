package cluster_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// The burner's CPU limit and the memory it holds in /dev/shm (tmpfs: charged to the
// container and in its working set, as in TestStatsSummary).
const (
	burnCPUMilli = 200
	burnShmBytes = 16_000_000
)

// burnPod is a pod whose one container fills /dev/shm, then spins under a CPU limit, on the
// host's node, whose berth the test reads directly.
var burnPod = fmt.Sprintf(`apiVersion: v1
kind: Pod
metadata: {name: burn}
spec:
  nodeSelector: {kubernetes.io/hostname: %s}
  restartPolicy: Never
  terminationGracePeriodSeconds: 2
  containers:
  - name: burn
    image: %s
    command: [sh, -c, 'head -c %d /dev/zero > /dev/shm/fill; trap "exit 0" TERM; while :; do :; done']
    resources:
      limits: {cpu: %dm, memory: 64Mi}
`, nodeName, busybox, burnShmBytes, burnCPUMilli)

// podMetrics is what the test reads of a metrics.k8s.io/v1beta1 PodMetrics.
type podMetrics struct {
	Timestamp  time.Time `json:"timestamp"`
	Window     string    `json:"window"`
	Containers []struct {
		Name  string            `json:"name"`
		Usage map[string]string `json:"usage"`
	} `json:"containers"`
}

// TestTop: `kubectl top node` and `kubectl top pod` through metrics-server (hack/cluster.sh
// runs it on the node behind the v1beta1.metrics.k8s.io APIService), with no cAdvisor for the
// containers. Where the numbers come from, in the kubelet 1.37 on berth
// (PodAndContainerStatsFromCRI at its default, off): metrics-server scrapes the kubelet's
// /metrics/resource and uses container_cpu_usage_seconds_total and
// container_memory_working_set_bytes for pods (summed per pod by kubectl), node_* for nodes.
// The kubelet's resource collector takes them from its summary provider, which for any
// runtime but CRI-O is the CRI stats provider: container cpu and working set (and their
// sample times) are berth's ListContainerStats; cAdvisor's stats would replace them only for
// containers it can name, and its raw cgroup handler names none of berth's. The node's
// numbers are the kubelet's embedded cAdvisor's view of the root cgroup (there is no CRI call
// for a node), and the pod_* series, which metrics-server does not read, are cAdvisor's pod
// cgroup. (kubelet 1.37.2: cadvisor.UsingLegacyCadvisorStats, criStatsProvider.
// ListPodCPUAndMemoryStats, summaryProviderImpl.GetCPUAndMemoryStats. On this cluster a
// container's series in /metrics/resource carry the value and timestamp of berth's CRI reading
// exactly, while pod_* stay 0 until cAdvisor's first housekeeping of the pod cgroup.)
//
// So the pod's numbers are checked against berth's: metrics-server's cpu usage is the
// counter's increase between two of its scrapes divided by the window, so usage×window is
// the cpu time the container used inside the window. Once the window starts after a direct
// reading of berth's stats and ends before a second one, that cpu time is at most the
// increase between the two readings: the counter only grows. The memory is berth's working
// set at the window's end; the container holds a fixed amount after its fill (the first
// reading waits for it), so it lies within the two readings, give or take 1 MiB of page cache
// (the shell's binary) that the kernel may reclaim or bring back. Neither bound depends on
// timing. The CPU limit caps usage over a window W at the quota plus at most one CFS period's
// quota and the per-CPU runtime slices: under 5% for windows of seconds (metrics-server's are
// its 15 s resolution, 10 s at least for a fresh container).
func TestTop(t *testing.T) {
	needCluster(t)
	ns := namespace(t)
	applyAndWait(t, ns, burnPod, "burn")
	ctrs := criContainers(t, ns)
	if len(ctrs) != 1 {
		t.Fatalf("berth has %d containers in %s, want 1", len(ctrs), ns)
	}
	id := ctrs[0].Id

	var nodeOut string
	waitFor(t, 3*time.Minute, "the node in kubectl top node", func() error {
		out, err := kubectl(t, "top", "node", nodeName)
		if err != nil {
			return err
		}
		nodeOut = out
		return checkTopNode(out)
	})
	t.Logf("kubectl top node %s:\n%s", nodeName, nodeOut)

	// The first reading once the fill is done: from there on the container holds its memory.
	var before *runtimeapi.ContainerStats
	waitFor(t, time.Minute, "berth's working set to hold the fill", func() error {
		before = criStats(t, id)
		if before.GetCpu() == nil || before.GetMemory() == nil {
			return fmt.Errorf("berth has no cpu or memory sample for %s: %v", id, before)
		}
		if ws := before.Memory.WorkingSetBytes.GetValue(); ws < burnShmBytes {
			return fmt.Errorf("berth's working set %d, the fill is %d", ws, burnShmBytes)
		}
		return nil
	})
	start := time.Unix(0, before.Cpu.Timestamp)
	var m *podMetrics
	waitFor(t, 3*time.Minute, "PodMetrics with a window after berth's first reading", func() error {
		var err error
		m, err = getPodMetrics(t, ns, "burn")
		if err != nil {
			return err
		}
		return windowAfter(m, start)
	})
	after := criStats(t, id)
	t.Logf("PodMetrics at %s over %s: %v; berth's cpu %d..%d ns at %s..%s, working set %d..%d",
		m.Timestamp.Format(time.RFC3339), m.Window, m.Containers, before.Cpu.UsageCoreNanoSeconds.GetValue(),
		after.Cpu.UsageCoreNanoSeconds.GetValue(), start.Format(time.RFC3339Nano),
		time.Unix(0, after.Cpu.Timestamp).Format(time.RFC3339Nano),
		before.Memory.WorkingSetBytes.GetValue(), after.Memory.WorkingSetBytes.GetValue())
	if err := checkPodMetrics(m, before, after); err != nil {
		t.Fatal(err)
	}

	var podOut string
	waitFor(t, time.Minute, "the pod in kubectl top pod", func() error {
		out, err := kubectl(t, "-n", ns, "top", "pod", "burn")
		if err != nil {
			return err
		}
		podOut = out
		return checkTopPod(out)
	})
	t.Logf("kubectl top pod -n %s burn:\n%s", ns, podOut)
}

func getPodMetrics(t *testing.T, ns, name string) (*podMetrics, error) {
	t.Helper()
	out, err := kubectl(t, "get", "--raw", "/apis/metrics.k8s.io/v1beta1/namespaces/"+ns+"/pods/"+name)
	if err != nil {
		return nil, err
	}
	var m podMetrics
	if err := json.Unmarshal([]byte(out), &m); err != nil {
		return nil, fmt.Errorf("decode PodMetrics %s/%s: %w", ns, name, err)
	}
	return &m, nil
}

// windowAfter: the metrics' window starts no earlier than start. The timestamp is RFC 3339
// to the second, at or before the true one, so the start computed from it is too.
func windowAfter(m *podMetrics, start time.Time) error {
	w, err := time.ParseDuration(m.Window)
	if err != nil {
		return fmt.Errorf("PodMetrics window %q: %w", m.Window, err)
	}
	if from := m.Timestamp.Add(-w); from.Before(start) {
		return fmt.Errorf("window %s..%s starts before berth's reading at %s", from, m.Timestamp, start)
	}
	return nil
}

// checkPodMetrics holds the metrics of the pod's one container against berth's two readings
// around their window (see TestTop).
func checkPodMetrics(m *podMetrics, before, after *runtimeapi.ContainerStats) error {
	if len(m.Containers) != 1 || m.Containers[0].Name != "burn" {
		return fmt.Errorf("PodMetrics containers %+v, want burn alone", m.Containers)
	}
	w, err := time.ParseDuration(m.Window)
	if err != nil {
		return fmt.Errorf("PodMetrics window %q: %w", m.Window, err)
	}
	cpu, err := resource.ParseQuantity(m.Containers[0].Usage["cpu"])
	if err != nil {
		return fmt.Errorf("PodMetrics cpu %q: %w", m.Containers[0].Usage["cpu"], err)
	}
	mem, err := resource.ParseQuantity(m.Containers[0].Usage["memory"])
	if err != nil {
		return fmt.Errorf("PodMetrics memory %q: %w", m.Containers[0].Usage["memory"], err)
	}
	if after.GetCpu() == nil || after.GetMemory() == nil {
		return fmt.Errorf("berth has no cpu or memory sample: %v", after)
	}
	// usage (ns of cpu per s) × window (s) = ns of cpu in the window; metrics-server
	// truncates usage to whole nanocores and the kubelet's counter is in float seconds: 1 ms
	// of slack covers both.
	used := float64(cpu.ScaledValue(resource.Nano)) * w.Seconds()
	c1, c2 := before.Cpu.UsageCoreNanoSeconds.GetValue(), after.Cpu.UsageCoreNanoSeconds.GetValue()
	if used <= 0 || used > float64(c2-c1)+1e6 {
		return fmt.Errorf("cpu %s over %s is %.0f ns, berth's counter grew %d ns between its readings around the window",
			cpu.String(), w, used, c2-c1)
	}
	if limit := burnCPUMilli * 1e6 * 1.05; float64(cpu.ScaledValue(resource.Nano)) > limit {
		return fmt.Errorf("cpu %s above the %dm limit", cpu.String(), burnCPUMilli)
	}
	ws, b, a := mem.Value(), int64(before.Memory.WorkingSetBytes.GetValue()), int64(after.Memory.WorkingSetBytes.GetValue())
	if ws < burnShmBytes {
		return fmt.Errorf("memory %d, want at least the %d bytes in /dev/shm", ws, burnShmBytes)
	}
	if lo, hi := min(a, b)-1<<20, max(a, b)+1<<20; ws < lo || ws > hi {
		return fmt.Errorf("memory %d, berth's working set %d and %d around it", ws, b, a)
	}
	return nil
}

// checkTopNode: kubectl top node's one row names the node with non-zero cpu and memory.
func checkTopNode(out string) error {
	row, err := topRow(out, 5)
	if err != nil {
		return err
	}
	if row[0] != nodeName {
		return fmt.Errorf("kubectl top node lists %q, want %s", row[0], nodeName)
	}
	return positive(map[string]string{"CPU(cores)": row[1], "MEMORY(bytes)": row[3]})
}

// checkTopPod: kubectl top pod's row for burn, with cpu up to the limit and at least the
// memory in /dev/shm.
func checkTopPod(out string) error {
	row, err := topRow(out, 3)
	if err != nil {
		return err
	}
	if row[0] != "burn" {
		return fmt.Errorf("kubectl top pod lists %q, want burn", row[0])
	}
	if err := positive(map[string]string{"CPU(cores)": row[1], "MEMORY(bytes)": row[2]}); err != nil {
		return err
	}
	cpu, mem := resource.MustParse(row[1]), resource.MustParse(row[2])
	if cpu.MilliValue() > burnCPUMilli*105/100 {
		return fmt.Errorf("kubectl top pod: cpu %s above the %dm limit", row[1], burnCPUMilli)
	}
	// kubectl prints whole Mi, rounded down.
	if mem.Value() < burnShmBytes&^(1<<20-1) {
		return fmt.Errorf("kubectl top pod: memory %s, want at least the %d bytes in /dev/shm", row[2], burnShmBytes)
	}
	return nil
}

// topRow returns the fields of kubectl top's one data row, which must have n of them.
func topRow(out string, n int) ([]string, error) {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		return nil, fmt.Errorf("kubectl top printed %d lines, want a header and a row:\n%s", len(lines), out)
	}
	row := strings.Fields(lines[1])
	if len(row) != n {
		return nil, fmt.Errorf("kubectl top row %q has %d fields, want %d", lines[1], len(row), n)
	}
	return row, nil
}

// positive: each value is a quantity above zero.
func positive(vals map[string]string) error {
	for col, v := range vals {
		q, err := resource.ParseQuantity(v)
		if err != nil {
			return fmt.Errorf("kubectl top %s %q: %w", col, v, err)
		}
		if q.Sign() <= 0 {
			return fmt.Errorf("kubectl top %s is %s", col, v)
		}
	}
	return nil
}
