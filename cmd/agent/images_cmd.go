package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/images"
)

// imagesCommand handles `berth images import FILE`: an OCI image layout or
// docker-archive tarball, for nodes that cannot reach a registry.
func imagesCommand(cfg config.Config, args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "import" {
		return errors.New("usage: berth images import FILE")
	}
	f, err := os.Open(args[1])
	if err != nil {
		return fmt.Errorf("import: %w", err)
	}
	defer f.Close()
	imported, err := importViaAgent(cfg, f)
	if errors.Is(err, errNoAgent) {
		imported, err = importDirect(cfg, f)
	}
	if err != nil {
		return fmt.Errorf("import %s: %w", args[1], err)
	}
	for _, img := range imported {
		fmt.Fprintf(stdout, "imported %s %s\n", img.ID, strings.Join(img.RepoTags, ","))
	}
	return nil
}

var errNoAgent = errors.New("no agent is running")

func importViaAgent(cfg config.Config, body io.Reader) ([]images.Image, error) {
	path := adminSocket(cfg)
	conn, err := net.Dial("unix", path)
	if err != nil {
		return nil, errNoAgent
	}
	conn.Close()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", path)
		},
	}}
	resp, err := client.Post("http://berth/v1/images/import", "application/x-tar", body)
	if err != nil {
		return nil, fmt.Errorf("send to agent: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
		return nil, fmt.Errorf("agent: %s", strings.TrimSpace(string(msg)))
	}
	var out []images.Image
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return nil, fmt.Errorf("read agent answer: %w", err)
	}
	return out, nil
}

// importDirect opens the image store itself; the store's lock makes this fail
// cleanly rather than corrupt anything if an agent starts meanwhile.
func importDirect(cfg config.Config, r io.Reader) ([]images.Image, error) {
	imgs, err := openImages(cfg, slog.New(slog.NewTextHandler(os.Stderr, nil)))
	if err != nil {
		return nil, err
	}
	defer imgs.Close()
	return imgs.Import(context.Background(), r)
}
