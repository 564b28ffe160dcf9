package server

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	"google.golang.org/grpc"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/berth-runtime/berth/pkg/cgroups"
	"github.com/berth-runtime/berth/pkg/cri/store"
)

// CRI pod metrics with cAdvisor's names and labels, so that the kubelet's /metrics/cadvisor
// works without cAdvisor (the kubelet turns ListPodSandboxMetrics into Prometheus series
// using the descriptors). Values are uint64 in the CRI, so *_seconds_total counters are
// whole seconds, as in CRI-O.

var (
	baseLabels = []string{"container", "id", "image", "name", "namespace", "pod"}
	netLabels  = append(append([]string{}, baseLabels...), "interface")
	fsLabels   = append(append([]string{}, baseLabels...), "device")
	blkLabels  = append(append([]string{}, baseLabels...), "device", "major", "minor", "operation")
)

type metricDef struct {
	name, help string
	typ        runtimeapi.MetricType
	labels     []string
}

const (
	counter = runtimeapi.MetricType_COUNTER
	gauge   = runtimeapi.MetricType_GAUGE
)

// containerMetricDefs are per container; each has a value function in containerMetricValues.
var containerMetricDefs = []metricDef{
	{"container_cpu_usage_seconds_total", "Cumulative cpu time consumed in seconds.", counter, baseLabels},
	{"container_cpu_user_seconds_total", "Cumulative user cpu time consumed in seconds.", counter, baseLabels},
	{"container_cpu_system_seconds_total", "Cumulative system cpu time consumed in seconds.", counter, baseLabels},
	{"container_memory_usage_bytes", "Current memory usage in bytes, including all memory regardless of when it was accessed.", gauge, baseLabels},
	{"container_memory_working_set_bytes", "Current working set in bytes.", gauge, baseLabels},
	{"container_memory_rss", "Size of RSS in bytes.", gauge, baseLabels},
	{"container_memory_swap", "Container swap usage in bytes.", gauge, baseLabels},
	{"container_memory_failures_total", "Cumulative count of memory allocation failures (page faults).", counter, baseLabels},
	{"container_memory_cache", "Number of bytes of page cache memory.", gauge, baseLabels},
	{"container_memory_mapped_file", "Size of memory mapped files in bytes.", gauge, baseLabels},
	{"container_memory_kernel_usage", "Size of kernel memory allocated in bytes.", gauge, baseLabels},
	{"container_memory_max_usage_bytes", "Maximum memory usage recorded in bytes.", gauge, baseLabels},
	{"container_memory_failcnt", "Number of memory usage hits limits.", counter, baseLabels},
	{"container_cpu_cfs_periods_total", "Number of elapsed enforcement period intervals.", counter, baseLabels},
	{"container_cpu_cfs_throttled_periods_total", "Number of throttled period intervals.", counter, baseLabels},
	{"container_cpu_cfs_throttled_seconds_total", "Total time duration the container has been throttled.", counter, baseLabels},
	{"container_threads", "Number of threads running inside the container.", gauge, baseLabels},
	{"container_file_descriptors", "Number of open file descriptors for the container.", gauge, baseLabels},
	{"container_sockets", "Number of open sockets for the container.", gauge, baseLabels},
	{"container_oom_events_total", "Count of out of memory events observed for the container.", counter, baseLabels},
	{"container_processes", "Number of processes running inside the container.", gauge, baseLabels},
	{"container_threads_max", "Maximum number of threads allowed inside the container, 0 when unlimited.", gauge, baseLabels},
	{"container_spec_memory_limit_bytes", "Memory limit for the container, 0 when unlimited.", gauge, baseLabels},
	{"container_spec_memory_swap_limit_bytes", "Memory swap limit for the container.", gauge, baseLabels},
	{"container_spec_cpu_period", "CPU period of the container.", gauge, baseLabels},
	{"container_spec_cpu_quota", "CPU quota of the container.", gauge, baseLabels},
	{"container_spec_cpu_shares", "CPU share of the container.", gauge, baseLabels},
	{"container_start_time_seconds", "Start time of the container since unix epoch in seconds.", gauge, baseLabels},
	{"container_last_seen", "Last time a container was seen by the exporter.", gauge, baseLabels},
	{"container_fs_usage_bytes", "Number of bytes that are consumed by the container's writable layer.", gauge, fsLabels},
	{"container_fs_limit_bytes", "Number of bytes that can be consumed by the container on the filesystem of its writable layer.", gauge, fsLabels},
	{"container_fs_inodes_total", "Number of inodes of the filesystem of the container's writable layer.", gauge, fsLabels},
	{"container_fs_inodes_free", "Number of available inodes on the filesystem of the container's writable layer.", gauge, fsLabels},
}

// deviceMetricDefs are per block device the container's cgroup did I/O on (blkio / io.stat);
// a container without I/O has none.
var deviceMetricDefs = []metricDef{
	{"container_fs_reads_bytes_total", "Cumulative count of bytes read.", counter, fsLabels},
	{"container_fs_reads_total", "Cumulative count of reads completed.", counter, fsLabels},
	{"container_fs_writes_bytes_total", "Cumulative count of bytes written.", counter, fsLabels},
	{"container_fs_writes_total", "Cumulative count of writes completed.", counter, fsLabels},
	{"container_blkio_device_usage_total", "Blkio device bytes usage.", counter, blkLabels},
}

// podMetricDefs are per pod: the network belongs to the pod, as cAdvisor reports it on the
// POD (pause) container.
var podMetricDefs = []metricDef{
	{"container_network_receive_bytes_total", "Cumulative count of bytes received.", counter, netLabels},
	{"container_network_receive_packets_total", "Cumulative count of packets received.", counter, netLabels},
	{"container_network_receive_errors_total", "Cumulative count of errors encountered while receiving.", counter, netLabels},
	{"container_network_receive_packets_dropped_total", "Cumulative count of packets dropped while receiving.", counter, netLabels},
	{"container_network_transmit_bytes_total", "Cumulative count of bytes transmitted.", counter, netLabels},
	{"container_network_transmit_packets_total", "Cumulative count of packets transmitted.", counter, netLabels},
	{"container_network_transmit_errors_total", "Cumulative count of errors encountered while transmitting.", counter, netLabels},
	{"container_network_transmit_packets_dropped_total", "Cumulative count of packets dropped while transmitting.", counter, netLabels},
}

// ListMetricDescriptors lists every metric ListPodSandboxMetrics may return. The set is
// static, as the CRI requires.
func (s *Service) ListMetricDescriptors(ctx context.Context, _ *runtimeapi.ListMetricDescriptorsRequest) (*runtimeapi.ListMetricDescriptorsResponse, error) {
	out := make([]*runtimeapi.MetricDescriptor, 0, len(containerMetricDefs)+len(deviceMetricDefs)+len(podMetricDefs))
	for _, d := range slices.Concat(containerMetricDefs, deviceMetricDefs, podMetricDefs) {
		out = append(out, &runtimeapi.MetricDescriptor{Name: d.name, Help: d.help, LabelKeys: d.labels})
	}
	return &runtimeapi.ListMetricDescriptorsResponse{Descriptors: out}, nil
}

// ListPodSandboxMetrics reports the metrics of every pod and its containers from the cache.
func (s *Service) ListPodSandboxMetrics(ctx context.Context, _ *runtimeapi.ListPodSandboxMetricsRequest) (*runtimeapi.ListPodSandboxMetricsResponse, error) {
	return &runtimeapi.ListPodSandboxMetricsResponse{PodMetrics: s.podMetrics()}, nil
}

// StreamPodSandboxMetrics sends the same list in batches.
func (s *Service) StreamPodSandboxMetrics(_ *runtimeapi.StreamPodSandboxMetricsRequest, stream grpc.ServerStreamingServer[runtimeapi.StreamPodSandboxMetricsResponse]) error {
	return sendBatches(s.podMetrics(), func(b []*runtimeapi.PodSandboxMetrics) error {
		return stream.Send(&runtimeapi.StreamPodSandboxMetricsResponse{PodSandboxMetrics: b})
	})
}

func (s *Service) podMetrics() []*runtimeapi.PodSandboxMetrics {
	snap := s.stats.fresh()
	out := []*runtimeapi.PodSandboxMetrics{}
	for _, sb := range s.store.Sandboxes.List() {
		md := sb.Metadata()
		pm := &runtimeapi.PodSandboxMetrics{PodSandboxId: md.ID}
		meta := md.Config.GetMetadata()
		if p := snap.Pods[md.ID]; p != nil && !p.NetAt.IsZero() {
			base := []string{"POD", md.ID, "", md.Name, meta.GetNamespace(), meta.GetName()}
			for _, f := range p.Net {
				pm.Metrics = append(pm.Metrics, netMetrics(append(append([]string{}, base...), f.Name), f, p.NetAt)...)
			}
		}
		for _, c := range s.store.ContainersOf(md.ID) {
			sample := snap.Containers[c.ID()]
			if sample == nil {
				continue
			}
			pm.ContainerMetrics = append(pm.ContainerMetrics, &runtimeapi.ContainerMetrics{
				ContainerId: c.ID(), Metrics: containerMetrics(c, meta, sample, snap.At),
			})
		}
		out = append(out, pm)
	}
	return out
}

func metric(d metricDef, at time.Time, labels []string, v uint64) *runtimeapi.Metric {
	return &runtimeapi.Metric{Name: d.name, Timestamp: at.UnixNano(), MetricType: d.typ, LabelValues: labels, Value: u64(v)}
}

func netMetrics(labels []string, f ifaceStats, at time.Time) []*runtimeapi.Metric {
	vals := []uint64{f.RxBytes, f.RxPackets, f.RxErrors, f.RxDrops, f.TxBytes, f.TxPackets, f.TxErrors, f.TxDrops}
	out := make([]*runtimeapi.Metric, len(podMetricDefs))
	for i, d := range podMetricDefs {
		out[i] = metric(d, at, labels, vals[i])
	}
	return out
}

// containerMetrics gives the cgroup figures only for a container with a live cgroup; the
// spec, start time and writable layer are reported for every container.
func containerMetrics(c *store.Container, pod *runtimeapi.PodSandboxMetadata, s *containerSample, at time.Time) []*runtimeapi.Metric {
	md, st := c.Metadata(), c.Status()
	cname := md.Config.GetMetadata().GetName()
	labels := []string{cname, md.ID, md.ImageName, md.Name, pod.GetNamespace(), pod.GetName()}
	vals := map[string]uint64{"container_last_seen": uint64(at.Unix())}
	if !st.StartedAt.IsZero() {
		vals["container_start_time_seconds"] = uint64(st.StartedAt.Unix())
	}
	if r := st.Resources.LinuxContainerResources; r != nil {
		vals["container_spec_cpu_period"] = uint64(max(r.CpuPeriod, 0))
		vals["container_spec_cpu_quota"] = uint64(max(r.CpuQuota, 0))
		vals["container_spec_cpu_shares"] = uint64(max(r.CpuShares, 0))
		vals["container_spec_memory_swap_limit_bytes"] = uint64(max(r.MemorySwapLimitInBytes, 0))
		vals["container_spec_memory_limit_bytes"] = uint64(max(r.MemoryLimitInBytes, 0))
	}
	if cg := s.CG; cg != nil {
		vals["container_cpu_usage_seconds_total"] = cg.CPUUsageNanos / uint64(time.Second)
		vals["container_cpu_user_seconds_total"] = cg.CPUUserNanos / uint64(time.Second)
		vals["container_cpu_system_seconds_total"] = cg.CPUSystemNanos / uint64(time.Second)
		vals["container_memory_usage_bytes"] = cg.MemoryUsageBytes
		vals["container_memory_working_set_bytes"] = cg.MemoryWorkingSetBytes
		vals["container_memory_rss"] = cg.MemoryRSSBytes
		vals["container_memory_swap"] = cg.SwapUsageBytes
		vals["container_memory_failures_total"] = cg.PageFaults
		vals["container_oom_events_total"] = cg.OOMEvents
		vals["container_processes"] = cg.PidsCurrent
		vals["container_threads_max"] = cg.PidsLimit
		if limited(cg.MemoryLimitBytes) {
			vals["container_spec_memory_limit_bytes"] = cg.MemoryLimitBytes
		}
		vals["container_memory_cache"] = cg.MemoryCacheBytes
		vals["container_memory_mapped_file"] = cg.MemoryMappedFileBytes
		vals["container_memory_kernel_usage"] = cg.MemoryKernelBytes
		vals["container_memory_max_usage_bytes"] = cg.MemoryMaxUsageBytes
		vals["container_memory_failcnt"] = cg.MemoryFailcnt
		vals["container_cpu_cfs_periods_total"] = cg.CFSPeriods
		vals["container_cpu_cfs_throttled_periods_total"] = cg.CFSThrottledPeriods
		vals["container_cpu_cfs_throttled_seconds_total"] = cg.CFSThrottledNanos / uint64(time.Second)
		vals["container_threads"] = cg.Procs.Threads
		vals["container_file_descriptors"] = cg.Procs.FileDescriptors
		vals["container_sockets"] = cg.Procs.Sockets
	}
	if s.HasLayer {
		vals["container_fs_usage_bytes"] = s.Layer.Bytes
		if s.Layer.HasFs {
			vals["container_fs_limit_bytes"] = s.Layer.Limit
			vals["container_fs_inodes_total"] = s.Layer.InodesTotal
			vals["container_fs_inodes_free"] = s.Layer.InodesFree
		}
	}
	var out []*runtimeapi.Metric
	for _, d := range containerMetricDefs {
		v, ok := vals[d.name]
		if !ok {
			continue
		}
		l := labels
		if len(d.labels) == len(fsLabels) {
			l = append(append([]string{}, labels...), md.LayerDir)
		}
		out = append(out, metric(d, at, l, v))
	}
	if s.CG != nil {
		out = append(out, deviceMetrics(labels, &s.CG.Stats, at, blockDeviceName)...)
	}
	return out
}

// deviceMetrics gives cAdvisor's per-device I/O counters: reads and writes (bytes from the
// service-bytes counters, operations from the serviced ones) and every operation's bytes.
func deviceMetrics(labels []string, cg *cgroups.Stats, at time.Time, devName func(major, minor uint64) string) []*runtimeapi.Metric {
	def := func(name string) metricDef {
		i := slices.IndexFunc(deviceMetricDefs, func(d metricDef) bool { return d.name == name })
		return deviceMetricDefs[i]
	}
	with := func(extra ...string) []string { return append(append([]string{}, labels...), extra...) }
	var out []*runtimeapi.Metric
	add := func(entries []cgroups.BlkioEntry, read, write string) {
		for _, e := range entries {
			switch e.Op {
			case "Read":
				out = append(out, metric(def(read), at, with(devName(e.Major, e.Minor)), e.Value))
			case "Write":
				out = append(out, metric(def(write), at, with(devName(e.Major, e.Minor)), e.Value))
			}
		}
	}
	add(cg.IOServiceBytes, "container_fs_reads_bytes_total", "container_fs_writes_bytes_total")
	add(cg.IOServiced, "container_fs_reads_total", "container_fs_writes_total")
	usage := def("container_blkio_device_usage_total")
	for _, e := range cg.IOServiceBytes {
		l := with(devName(e.Major, e.Minor), fmt.Sprint(e.Major), fmt.Sprint(e.Minor), e.Op)
		out = append(out, metric(usage, at, l, e.Value))
	}
	return out
}

// blockDeviceName names a block device as cAdvisor does (/dev/sda), through sysfs; a device
// sysfs does not know keeps its numbers.
func blockDeviceName(major, minor uint64) string {
	l, err := os.Readlink(fmt.Sprintf("/sys/dev/block/%d:%d", major, minor))
	if err != nil {
		return fmt.Sprintf("%d:%d", major, minor)
	}
	return "/dev/" + filepath.Base(l)
}
