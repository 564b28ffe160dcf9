package server

import (
	"fmt"
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
	if s.cfg.Metrics.Address == "" {
		return nil
	}
	srv, err := startMetricsServer(s.cfg.Metrics.Address, filepath.Join(s.cfg.State, "metrics.addr"), s.prom.reg, s.log)
	if err != nil {
		return fmt.Errorf("new cri service: %w", err)
	}
	s.metricsSrv = srv
	s.log.Info("serving metrics and pprof", "address", srv.addr)
	return nil
}

// closeTelemetry runs after s.stop is closed.
func (s *Service) closeTelemetry() {
	if s.metricsSrv != nil {
		s.metricsSrv.close()
	}
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
