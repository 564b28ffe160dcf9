package server

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"github.com/berth-runtime/berth/pkg/cgroups"
)

// telemetryState tracks the stats collector's goroutine (s.exits is the exit watchers').
type telemetryState struct {
	wg sync.WaitGroup
}

// initTelemetry builds the stats cache, the event broker and the Prometheus registry, and
// serves /metrics when configured. Called at the end of New.
func (s *Service) initTelemetry() error {
	s.stats = newStatsCollector(s.store, statsSources{
		cgroup:  cgroups.GetStats,
		network: s.netnsInterfaces,
		layer:   walkLayer,
	}, s.cfg.Metrics.StatsPeriod.Duration)
	s.events = newEventBroker(s.store)
	s.prom = newPromMetrics(s.store)
	s.images = pullObserver{ImageStore: s.images, m: s.prom}
	stats := s.stats
	s.telemetry.wg.Add(1)
	go func() {
		defer s.telemetry.wg.Done()
		stats.run(s.stop)
	}()
	if err := s.SetMetricsAddress(s.cfg.Metrics.Address); err != nil {
		return fmt.Errorf("new cri service: %w", err)
	}
	return nil
}

// SetMetricsAddress serves /metrics and /debug/pprof/ on addr from now on ("" serves them
// nowhere); the agent calls it again when its config is reloaded. The new listener is opened
// before the old one closes, so that an address that cannot be had leaves the endpoint where
// it was. addr must already be validated (loopback only: config.MetricsConfig).
func (s *Service) SetMetricsAddress(addr string) error {
	s.metricsMu.Lock()
	defer s.metricsMu.Unlock()
	if s.metricsSrv != nil && s.metricsSrv.configured == addr {
		return nil
	}
	addrFile := filepath.Join(s.cfg.State, "metrics.addr")
	var srv *metricsServer
	if addr != "" {
		var err error
		if srv, err = startMetricsServer(addr, addrFile, s.prom.reg, s.log); err != nil {
			return err
		}
		srv.configured = addr
		s.log.Info("serving metrics and pprof", "address", srv.addr)
	}
	if s.metricsSrv != nil {
		s.metricsSrv.close()
		if srv == nil {
			_ = os.Remove(addrFile)
			s.log.Info("stopped serving metrics and pprof")
		}
	}
	s.metricsSrv = srv
	return nil
}

// closeTelemetry runs after s.stop is closed.
func (s *Service) closeTelemetry() {
	s.metricsMu.Lock()
	if s.metricsSrv != nil {
		s.metricsSrv.close()
		s.metricsSrv = nil
	}
	s.metricsMu.Unlock()
	s.telemetry.wg.Wait()
}

// netnsInterfaces reads the interface counters from inside the pod's network namespace:
// /proc/thread-self/net/dev shows the namespace of the calling thread, which Do has moved.
func (s *Service) netnsInterfaces(netnsPath string) ([]ifaceStats, error) {
	var out []ifaceStats
	err := s.namespaces.Do(netnsPath, func() error {
		ifs, err := readNetDev("/proc/thread-self/net/dev")
		out = ifs
		return err
	})
	return out, err
}
