package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc/codes"

	"github.com/berth-runtime/berth/pkg/cri/store"
	"github.com/berth-runtime/berth/pkg/images"
)

// promMetrics is the agent's own Prometheus registry: RPC latency and errors, pulls, and the
// number of pods and containers by state. It is owned by the Service (no global registry),
// so that two services in one test process do not collide.
type promMetrics struct {
	reg       *prometheus.Registry
	rpc       *prometheus.HistogramVec
	rpcErrors *prometheus.CounterVec
	pulls     *prometheus.HistogramVec
	pullBytes prometheus.Counter
	steps     *prometheus.HistogramVec
}

func newPromMetrics(st *store.Store) *promMetrics {
	m := &promMetrics{
		reg: prometheus.NewRegistry(),
		rpc: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_cri_request_duration_seconds", Help: "Latency of CRI requests by method.",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 9), // 1ms .. 65s
		}, []string{"method"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "berth_cri_request_errors_total", Help: "CRI requests that failed, by method and gRPC code.",
		}, []string{"method", "code"}),
		pulls: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "berth_image_pull_duration_seconds", Help: "Duration of image pulls by outcome.",
			Buckets: prometheus.ExponentialBuckets(0.1, 3, 8), // 100ms .. 3.6m
		}, []string{"outcome"}),
		pullBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "berth_image_pull_bytes_total", Help: "Compressed bytes of the images pulled.",
		}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "berth_operation_step_duration_seconds",
			Help:    "Wall time of each step of building and tearing down pods and containers, successful or not.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5ms .. 16s
		}, []string{"operation", "step"}),
	}
	m.reg.MustRegister(m.rpc, m.rpcErrors, m.pulls, m.pullBytes, m.steps, stateCollector{st},
		prometheus.NewGoCollector(), prometheus.NewProcessCollector(prometheus.ProcessCollectorOpts{}))
	return m
}

// observeRPC is called by the gRPC interceptors for every call (see errors.go).
func (s *Service) observeRPC(method string, code codes.Code, d time.Duration) {
	s.prom.rpc.WithLabelValues(method).Observe(d.Seconds())
	if code != codes.OK {
		s.prom.rpcErrors.WithLabelValues(method, code.String()).Inc()
	}
}

var (
	podsDesc       = prometheus.NewDesc("berth_pods", "Pod sandboxes by state.", []string{"state"}, nil)
	containersDesc = prometheus.NewDesc("berth_containers", "Containers by state.", []string{"state"}, nil)
)

// stateCollector counts the stores at scrape time, so the figures are never stale.
type stateCollector struct{ st *store.Store }

func (c stateCollector) Describe(ch chan<- *prometheus.Desc) { ch <- podsDesc; ch <- containersDesc }

func (c stateCollector) Collect(ch chan<- prometheus.Metric) {
	pods := map[string]float64{string(store.SandboxReady): 0, string(store.SandboxNotReady): 0}
	for _, sb := range c.st.Sandboxes.List() {
		pods[string(sb.Status().State)]++
	}
	ctrs := map[string]float64{}
	for _, s := range []store.ContainerState{store.ContainerCreated, store.ContainerRunning, store.ContainerExited, store.ContainerUnknown} {
		ctrs[string(s)] = 0
	}
	for _, ctr := range c.st.Containers.List() {
		ctrs[string(ctr.Status().State)]++
	}
	for state, n := range pods {
		ch <- prometheus.MustNewConstMetric(podsDesc, prometheus.GaugeValue, n, state)
	}
	for state, n := range ctrs {
		ch <- prometheus.MustNewConstMetric(containersDesc, prometheus.GaugeValue, n, state)
	}
}

// pullObserver wraps the image store to time pulls and count their bytes: pkg/images stays
// free of Prometheus.
type pullObserver struct {
	ImageStore
	m *promMetrics
}

func (p pullObserver) Pull(ctx context.Context, ref string, auth *images.Auth) (images.Image, error) {
	start := time.Now()
	img, err := p.ImageStore.Pull(ctx, ref, auth)
	outcome := "success"
	if err != nil {
		outcome = "failure"
	} else {
		p.m.pullBytes.Add(float64(img.Size))
	}
	p.m.pulls.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
	return img, err
}

// metricsServer serves /metrics and /debug/pprof/ on the configured loopback address.
type metricsServer struct {
	srv        *http.Server
	addr       string // where it listens (the port chosen for port 0)
	configured string // the address it was asked for
	done       chan struct{}
}

func startMetricsServer(addr, addrFile string, reg *prometheus.Registry, log interface{ Warn(string, ...any) }) (*metricsServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen for metrics on %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	m := &metricsServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		addr: lis.Addr().String(), done: make(chan struct{}),
	}
	// With port 0 only the agent knows the port; tests and tools read it from here.
	if addrFile != "" {
		if err := os.MkdirAll(filepath.Dir(addrFile), 0o711); err == nil {
			if err := os.WriteFile(addrFile, []byte(m.addr+"\n"), 0o644); err != nil {
				log.Warn("write metrics address", "file", addrFile, "err", err)
			}
		}
	}
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("metrics server stopped", "err", err)
		}
	}()
	return m, nil
}

func (m *metricsServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}
