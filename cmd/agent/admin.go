package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/images"
)

// The admin socket serves what the CRI has no RPC for (image import), so that
// `berth images import` works while the agent holds the image store open.
func adminSocket(cfg config.Config) string { return filepath.Join(cfg.State, "admin.sock") }

type importer interface {
	Import(ctx context.Context, r io.Reader) ([]images.Image, error)
}

type adminServer struct {
	srv *http.Server
	lis net.Listener
}

func startAdmin(cfg config.Config, imgs importer, log *slog.Logger) (*adminServer, error) {
	path := adminSocket(cfg)
	lis, err := listenUnix(path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/images/import", func(w http.ResponseWriter, r *http.Request) {
		imported, err := imgs.Import(r.Context(), r.Body)
		if err != nil {
			log.Warn("image import failed", "err", err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(imported)
	})
	a := &adminServer{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, lis: lis}
	go a.srv.Serve(lis)
	return a, nil
}

func (a *adminServer) Close() error { return a.srv.Close() }
