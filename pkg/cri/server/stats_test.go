package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
)

// fakeStatsSources hands out scripted cgroup samples and counts reads.
type fakeStatsSources struct {
	mu     sync.Mutex
	cpu    map[string]uint64 // cgroup path -> cumulative ns
	now    time.Time
	reads  map[string]int
	walks  int
	layer  layerUsage
	netErr error
}

func (f *fakeStatsSources) sources() statsSources {
	return statsSources{
		cgroup: func(p string) (*cgroups.Stats, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.reads[p]++
			v, ok := f.cpu[p]
			if !ok {
				return nil, errdefs.ErrNotFound
			}
			return &cgroups.Stats{
				Timestamp: f.now, CPUUsageNanos: v, MemoryUsageBytes: 100, MemoryWorkingSetBytes: 80, MemoryLimitBytes: 1000, PidsCurrent: 3,
				CFSThrottledNanos: 2e9, Procs: cgroups.ProcStats{Processes: 1, Threads: 2, FileDescriptors: 5, Sockets: 1},
				IOServiceBytes: []cgroups.BlkioEntry{{Major: 8, Op: "Read", Value: 4096}, {Major: 8, Op: "Write", Value: 512}, {Major: 8, Op: "Total", Value: 4608}},
				IOServiced:     []cgroups.BlkioEntry{{Major: 8, Op: "Read", Value: 2}, {Major: 8, Op: "Write", Value: 1}},
			}, nil
		},
		network: func(string) ([]ifaceStats, error) {
			return []ifaceStats{{Name: "eth0", RxBytes: 10, TxBytes: 20}, {Name: "eth1", RxBytes: 1}}, f.netErr
		},
		layer: func(string) (layerUsage, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.walks++
			return f.layer, nil
		},
	}
}

func TestStatsCollector(t *testing.T) {
	e := newTestEnv(t)
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	id := e.createContainer(t, podID, pod, containerConfig("c"))
	if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	ctrCG := e.svc.store.Containers.List()[0].Metadata().Cgroup
	f := &fakeStatsSources{cpu: map[string]uint64{ctrCG: 1e9}, now: time.Unix(1000, 0), reads: map[string]int{}, layer: layerUsage{Bytes: 4096, Inodes: 2}}
	c := newStatsCollector(e.svc.store, f.sources(), 10*time.Second)
	c.now = func() time.Time { return f.now }
	e.svc.stats = c

	first := c.fresh()
	if s := first.Containers[id].CG; s == nil || s.HasRate {
		t.Fatalf("first sample %+v: want usage without a rate", s)
	}
	// Within maxAge the cache answers: no second read.
	if c.fresh() != first || f.reads[ctrCG] != 1 {
		t.Fatalf("cache not reused: %d reads", f.reads[ctrCG])
	}
	// Two seconds later, 1 s of CPU more: half a core.
	f.mu.Lock()
	f.now, f.cpu[ctrCG] = f.now.Add(2*time.Second), 2e9
	f.mu.Unlock()
	resp, err := e.svc.ContainerStats(context.Background(), &runtimeapi.ContainerStatsRequest{ContainerId: id})
	if err != nil {
		t.Fatal(err)
	}
	st := resp.Stats
	if got := st.GetCpu().GetUsageNanoCores().GetValue(); got != 5e8 {
		t.Errorf("usage_nano_cores = %d, want 5e8", got)
	}
	if st.GetCpu().GetUsageCoreNanoSeconds().GetValue() != 2e9 || st.GetMemory().GetWorkingSetBytes().GetValue() != 80 ||
		st.GetMemory().GetAvailableBytes().GetValue() != 920 {
		t.Errorf("stats %v", st)
	}
	if st.GetWritableLayer().GetUsedBytes().GetValue() != 4096 || st.GetWritableLayer().GetInodesUsed().GetValue() != 2 {
		t.Errorf("writable layer %v", st.GetWritableLayer())
	}
	if f.walks != 1 {
		t.Errorf("layer walked %d times within one period, want 1", f.walks)
	}

	ps, err := e.svc.PodSandboxStats(context.Background(), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: podID})
	if err != nil {
		t.Fatal(err)
	}
	net := ps.Stats.GetLinux().GetNetwork()
	if net.GetDefaultInterface().GetName() != "eth0" || net.GetDefaultInterface().GetTxBytes().GetValue() != 20 || len(net.GetInterfaces()) != 1 {
		t.Errorf("network %v", net)
	}
	if len(ps.Stats.GetLinux().GetContainers()) != 1 {
		t.Errorf("pod stats containers %v", ps.Stats.GetLinux().GetContainers())
	}

	for _, call := range []func() error{
		func() error {
			_, err := e.svc.ContainerStats(context.Background(), &runtimeapi.ContainerStatsRequest{ContainerId: "nope"})
			return err
		},
		func() error {
			_, err := e.svc.PodSandboxStats(context.Background(), &runtimeapi.PodSandboxStatsRequest{PodSandboxId: "nope"})
			return err
		},
	} {
		if err := call(); !errdefs.IsNotFound(err) {
			t.Errorf("unknown id: %v, want NotFound", err)
		}
	}
}

func TestParseNetDev(t *testing.T) {
	in := []byte(`Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:     100       2    0    0    0     0          0         0      100       2    0    0    0     0       0          0
  eth0:    1500      10    1    2    0     0          0         0     2500      20    3    4    0     0       0          0
`)
	got := parseNetDev(in)
	if len(got) != 1 {
		t.Fatalf("got %d interfaces, want eth0 only (lo excluded): %v", len(got), got)
	}
	want := ifaceStats{Name: "eth0", RxBytes: 1500, RxPackets: 10, RxErrors: 1, RxDrops: 2, TxBytes: 2500, TxPackets: 20, TxErrors: 3, TxDrops: 4}
	if got[0] != want {
		t.Errorf("got %+v, want %+v", got[0], want)
	}
}

func TestWalkLayer(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "a"), make([]byte, 10000), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(dir, "a"), filepath.Join(dir, "b")); err != nil {
		t.Fatal(err)
	}
	u, err := walkLayer(dir)
	if err != nil {
		t.Fatal(err)
	}
	// The directory and one file: the hard link counts once.
	if u.Inodes != 2 || u.Bytes < 10000 || u.Bytes > 10000+2*8192 {
		t.Errorf("walk = %+v", u)
	}
	if !u.HasFs || u.Limit < u.Bytes || u.InodesTotal == 0 || u.InodesFree > u.InodesTotal {
		t.Errorf("filesystem of the layer = %+v", u)
	}
	if _, err := walkLayer(filepath.Join(dir, "missing")); err == nil {
		t.Error("walking a missing layer succeeded")
	}
}

func TestMetricDescriptorsCoverPodMetrics(t *testing.T) {
	e := newTestEnv(t)
	d, err := e.svc.ListMetricDescriptors(context.Background(), &runtimeapi.ListMetricDescriptorsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	keys := map[string]int{}
	for _, x := range d.Descriptors {
		if _, dup := keys[x.Name]; dup {
			t.Errorf("descriptor %s listed twice", x.Name)
		}
		keys[x.Name] = len(x.LabelKeys)
	}
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	// Resources as critest's metrics spec sets them: the spec_* metrics report them.
	cc := containerConfig("c")
	cc.Linux = &runtimeapi.LinuxContainerConfig{Resources: &runtimeapi.LinuxContainerResources{
		CpuPeriod: 100000, CpuQuota: 20000, CpuShares: 1024, MemoryLimitInBytes: 64 << 20, MemorySwapLimitInBytes: 64 << 20,
	}}
	id := e.createContainer(t, podID, pod, cc)
	if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	f := &fakeStatsSources{cpu: map[string]uint64{e.svc.store.Containers.List()[0].Metadata().Cgroup: 3e9}, now: time.Now(), reads: map[string]int{},
		layer: layerUsage{Bytes: 4096, Inodes: 2, Limit: 1 << 30, InodesTotal: 100, InodesFree: 50, HasFs: true}}
	e.svc.stats = newStatsCollector(e.svc.store, f.sources(), time.Second)
	m, err := e.svc.ListPodSandboxMetrics(context.Background(), &runtimeapi.ListPodSandboxMetricsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	seen := 0
	got := map[string][]*runtimeapi.Metric{}
	for _, pm := range m.PodMetrics {
		all := pm.Metrics
		for _, cm := range pm.ContainerMetrics {
			all = append(all, cm.Metrics...)
		}
		for _, x := range all {
			n, ok := keys[x.Name]
			if !ok || n != len(x.LabelValues) {
				t.Errorf("metric %s: %d label values, descriptor has %d (known %v)", x.Name, len(x.LabelValues), n, ok)
			}
			got[x.Name] = append(got[x.Name], x)
			if x.Name == "container_cpu_usage_seconds_total" && x.Value.GetValue() != 3 {
				t.Errorf("cpu seconds = %d, want 3", x.Value.GetValue())
			}
			seen++
		}
	}
	if seen == 0 {
		t.Fatal("no metrics")
	}
	// critest (ListPodSandboxMetrics) wants a value for every descriptor it knows.
	for name := range keys {
		if len(got[name]) == 0 {
			t.Errorf("descriptor %s has no metric", name)
		}
	}
	sda := blockDeviceName(8, 0) // "/dev/sda", or "8:0" where there is none
	values := []struct {
		name   string
		labels []string // trailing label values, after the container's
		want   uint64
	}{
		{"container_cpu_cfs_throttled_seconds_total", nil, 2},
		{"container_threads", nil, 2},
		{"container_file_descriptors", nil, 5},
		{"container_sockets", nil, 1},
		{"container_fs_limit_bytes", nil, 1 << 30},
		{"container_fs_inodes_free", nil, 50},
		{"container_fs_reads_bytes_total", []string{sda}, 4096},
		{"container_fs_writes_total", []string{sda}, 1},
		{"container_blkio_device_usage_total", []string{sda, "8", "0", "Total"}, 4608},
	}
	for _, v := range values {
		found := false
		for _, x := range got[v.name] {
			lv := x.LabelValues
			if len(v.labels) > 0 && !slices.Equal(lv[len(lv)-len(v.labels):], v.labels) {
				continue
			}
			found = true
			if x.Value.GetValue() != v.want {
				t.Errorf("%s%v = %d, want %d", v.name, v.labels, x.Value.GetValue(), v.want)
			}
		}
		if !found {
			t.Errorf("no %s%v", v.name, v.labels)
		}
	}
}

func TestBlockDeviceName(t *testing.T) {
	tests := []struct {
		name         string
		major, minor uint64
		want         string
	}{
		{"unknown device keeps its numbers", 4095, 99999, "4095:99999"},
	}
	// A device this machine has: the first entry of /sys/dev/block.
	if ents, err := os.ReadDir("/sys/dev/block"); err == nil && len(ents) > 0 {
		var ma, mi uint64
		if _, err := fmt.Sscanf(ents[0].Name(), "%d:%d", &ma, &mi); err == nil {
			l, _ := os.Readlink(filepath.Join("/sys/dev/block", ents[0].Name()))
			tests = append(tests, struct {
				name         string
				major, minor uint64
				want         string
			}{"known device by its sysfs name", ma, mi, "/dev/" + filepath.Base(l)})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := blockDeviceName(tt.major, tt.minor); got != tt.want {
				t.Errorf("blockDeviceName(%d, %d) = %q, want %q", tt.major, tt.minor, got, tt.want)
			}
		})
	}
}

// A snapshot within its max age is still refreshed when it misses a pod or container, or
// samples a container in another state than it is now: metrics asked for right after a
// start must include it.
func TestStatsCollectorCoversNewObjects(t *testing.T) {
	e := newTestEnv(t)
	f := &fakeStatsSources{cpu: map[string]uint64{}, now: time.Unix(1000, 0), reads: map[string]int{}}
	c := newStatsCollector(e.svc.store, f.sources(), 10*time.Second)
	c.now = func() time.Time { return f.now }
	e.svc.stats = c

	empty := c.fresh()
	if c.fresh() != empty {
		t.Fatal("an unchanged store refreshed the cache within its max age")
	}
	pod := podConfig("p")
	podID := e.runPod(t, pod)
	withPod := c.fresh()
	if withPod == empty || withPod.Pods[podID] == nil {
		t.Fatal("new pod not sampled")
	}
	id := e.createContainer(t, podID, pod, containerConfig("c"))
	created := c.fresh()
	if created == withPod || created.Containers[id] == nil || created.Containers[id].Running {
		t.Fatalf("new container not sampled as created: %+v", created.Containers[id])
	}
	if _, err := e.svc.StartContainer(context.Background(), &runtimeapi.StartContainerRequest{ContainerId: id}); err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	f.cpu[e.svc.store.Containers.List()[0].Metadata().Cgroup] = 1e9
	f.mu.Unlock()
	started := c.fresh()
	if started == created || !started.Containers[id].Running || started.Containers[id].CG == nil {
		t.Fatalf("started container not sampled running with its cgroup: %+v", started.Containers[id])
	}
	if c.fresh() != started {
		t.Fatal("cache not reused once it covers the store")
	}
}
