package main

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"syscall"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/images"
)

// reloadable are the settings SIGHUP applies to the running agent. Every other changed
// setting is logged as needing a restart. The hosts.toml files below images.certs_dir need
// no reload at all: every pull reads them afresh.
var reloadable = []string{"log_level", "images.certs_dir", "images.insecure_registries", "images.pinned", "metrics.address"}

// reloader re-reads the configuration (file, then the same flags on top) and applies what
// can change without a restart. Its parts are interfaces so that a test drives it with fakes.
type reloader struct {
	load    func() (config.Config, error)
	cur     config.Config
	level   *slog.LevelVar
	images  interface{ Reload(images.Reloadable) error }
	metrics interface{ SetMetricsAddress(string) error }
	log     *slog.Logger
	hup     <-chan os.Signal // SIGHUP, caught since startup (notifyHUP)
}

// reload applies the new configuration and returns the settings that still need a restart.
// A file that does not load or validate changes nothing. A setting whose apply fails keeps
// its old value (and is tried again on the next reload).
func (r *reloader) reload() (restart []string, err error) {
	next, err := r.load()
	if err != nil {
		r.log.Error("reload: configuration not applied", "err", err)
		return nil, err
	}
	applied := r.cur
	if next.LogLevel != r.cur.LogLevel {
		r.level.Set(parseLevel(next.LogLevel))
		applied.LogLevel = next.LogLevel
	}
	if next.Images.CertsDir != r.cur.Images.CertsDir || !slices.Equal(next.Images.InsecureRegistries, r.cur.Images.InsecureRegistries) || !slices.Equal(next.Images.Pinned, r.cur.Images.Pinned) {
		if err := r.images.Reload(images.Reloadable{CertsDir: next.Images.CertsDir, InsecureRegistries: next.Images.InsecureRegistries, Pinned: next.Images.Pinned}); err != nil {
			r.log.Error("reload: image settings not applied", "err", err)
		} else {
			applied.Images.CertsDir, applied.Images.InsecureRegistries, applied.Images.Pinned = next.Images.CertsDir, next.Images.InsecureRegistries, next.Images.Pinned
		}
	}
	if next.Metrics.Address != r.cur.Metrics.Address {
		if err := r.metrics.SetMetricsAddress(next.Metrics.Address); err != nil {
			r.log.Error("reload: metrics address not applied", "err", err)
		} else {
			applied.Metrics.Address = next.Metrics.Address
		}
	}
	for _, k := range config.Changed(r.cur, applied) {
		r.log.Info("reload: applied", "setting", k)
	}
	for _, k := range config.Changed(applied, next) {
		if !slices.Contains(reloadable, k) {
			restart = append(restart, k)
		}
	}
	if len(restart) > 0 {
		r.log.Warn("reload: changed settings take effect only after a restart", "settings", restart)
	}
	r.cur = applied
	r.log.Info("configuration reloaded")
	return restart, nil
}

// notifyHUP catches SIGHUP from now on, so that one arriving while the agent starts up is
// kept for watch rather than ending the process (SIGHUP's default action).
func notifyHUP() (<-chan os.Signal, func()) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	return hup, func() { signal.Stop(hup) }
}

// watch reloads on every signal from hup until ctx ends.
func (r *reloader) watch(ctx context.Context, hup <-chan os.Signal) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			_, _ = r.reload()
		}
	}
}

func parseLevel(s string) slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(s)) // validated by config.Validate
	return l
}
