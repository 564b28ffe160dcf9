package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/coreos/go-systemd/v22/daemon"
	"google.golang.org/grpc"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/cri/server"
	"github.com/berth-runtime/berth/pkg/images"
)

// serve wires the managers from cfg, serves the CRI until ctx ends, then
// stops the gRPC server. Containers are not touched on the way out. With r set, SIGHUP
// reloads the configuration into the managers while serving.
func serve(ctx context.Context, cfg config.Config, log *slog.Logger, r *reloader) error {
	for _, dir := range []string{cfg.Root, cfg.State, filepath.Dir(cfg.Listen)} {
		if err := os.MkdirAll(dir, 0o711); err != nil {
			return fmt.Errorf("create %s: %w", dir, err)
		}
	}
	imgs, err := openImages(cfg, log)
	if err != nil {
		return err
	}
	defer imgs.Close()

	svc, err := server.New(server.Options{Config: cfg, Images: imgs, Logger: log})
	if err != nil {
		return err
	}
	defer svc.Close()
	g := grpc.NewServer(
		grpc.MaxRecvMsgSize(server.MaxMessageSize), grpc.MaxSendMsgSize(server.MaxMessageSize),
		grpc.UnaryInterceptor(server.UnaryInterceptor(svc, log)),
		grpc.StreamInterceptor(server.StreamInterceptor(svc, log)),
	)
	svc.Register(g)

	lis, err := listenUnix(cfg.Listen)
	if err != nil {
		return err
	}
	admin, err := startAdmin(cfg, imgs, log)
	if err != nil {
		lis.Close()
		return err
	}
	defer admin.Close()

	if err := svc.Recover(ctx); err != nil {
		lis.Close()
		return fmt.Errorf("recover state: %w", err)
	}
	errc := make(chan error, 1)
	go func() { errc <- g.Serve(lis) }()
	if r != nil {
		r.images, r.metrics = imgs, svc
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go r.watch(wctx, r.hup)
	}
	log.Info("berth serving the CRI", "socket", cfg.Listen, "version", version, "root", cfg.Root, "state", cfg.State)
	notifySystemd(daemon.SdNotifyReady, log)

	select {
	case <-ctx.Done():
		log.Info("shutting down; containers keep running")
		notifySystemd(daemon.SdNotifyStopping, log)
		g.GracefulStop()
		return ctx.Err()
	case err := <-errc:
		return fmt.Errorf("serve %s: %w", cfg.Listen, err)
	}
}

func openImages(cfg config.Config, log *slog.Logger) (*images.Service, error) {
	imgs, err := images.New(images.Options{
		Root:                   filepath.Join(cfg.Root, "images"),
		CertsDir:               cfg.Images.CertsDir,
		InsecureRegistries:     cfg.Images.InsecureRegistries,
		PullProgressTimeout:    cfg.Images.PullProgressTimeout.Duration,
		MaxConcurrentDownloads: cfg.Images.MaxConcurrentDownloads,
		Pinned:                 cfg.Images.Pinned,
		Logger:                 log.With("component", "images"),
	})
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return imgs, nil
}

// listenUnix listens on path, replacing a stale socket left by a killed agent
// but refusing to steal the socket of one that is still serving.
func listenUnix(path string) (net.Listener, error) {
	if c, err := net.Dial("unix", path); err == nil {
		c.Close()
		return nil, fmt.Errorf("listen %s: another agent is serving on it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	return lis, nil
}

// notifySystemd tells a Type=notify unit's systemd the agent's state (READY=1 once the CRI
// socket serves and recovery is done, STOPPING=1 on the way out). Without $NOTIFY_SOCKET (not
// run by systemd, or another unit type) it does nothing.
func notifySystemd(state string, log *slog.Logger) {
	if _, err := daemon.SdNotify(false, state); err != nil {
		log.Warn("notify systemd", "state", state, "err", err)
	}
}
