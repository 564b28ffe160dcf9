// Command berth is the node agent: it serves the CRI over gRPC on a unix socket
// so that the kubelet and crictl can run pods. Subcommands: config, doctor, images import.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/berth-runtime/berth/pkg/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "berth:", err)
		os.Exit(1)
	}
}

func run(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("berth", flag.ContinueOnError)
	opts := bindFlags(fs)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintf(stdout, "berth %s\n", version)
		return nil
	}
	cfg, err := opts.load(fs)
	if err != nil {
		return err
	}
	switch cmd := fs.Arg(0); cmd {
	case "":
		return serveUntilSignal(cfg)
	case "config":
		fmt.Fprint(stdout, cfg.String())
		return nil
	case "images":
		return imagesCommand(cfg, fs.Args()[1:], stdout)
	case "doctor":
		return doctorCommand(cfg, fs.Args()[1:], stdout)
	case "version":
		fmt.Fprintf(stdout, "berth %s\n", version)
		return nil
	default:
		return fmt.Errorf("unknown command %q (commands: config, doctor [--fix], images import FILE, version)", cmd)
	}
}

// flagOptions are the flags that override the config file.
type flagOptions struct {
	configPath                    string
	root, state, listen, logLevel string
	shim                          string
}

func bindFlags(fs *flag.FlagSet) *flagOptions {
	o := &flagOptions{}
	fs.StringVar(&o.configPath, "config", config.DefaultPath, "config file (TOML); a missing default file is fine")
	fs.StringVar(&o.root, "root", "", "persistent state directory (default /var/lib/berth)")
	fs.StringVar(&o.state, "state", "", "runtime state directory (default /run/berth)")
	fs.StringVar(&o.listen, "listen", "", "CRI unix socket (default /run/berth/berth.sock)")
	fs.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error")
	fs.StringVar(&o.shim, "shim-binary", "", "berth-shim path (default: beside berth, then $PATH)")
	return o
}

// load reads the config file and applies the flags that were set on top.
func (o *flagOptions) load(fs *flag.FlagSet) (config.Config, error) {
	explicit := false
	fs.Visit(func(f *flag.Flag) { explicit = explicit || f.Name == "config" })
	cfg, err := config.Load(o.configPath, !explicit)
	if err != nil {
		return cfg, err
	}
	override := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	override(&cfg.Root, o.root)
	override(&cfg.State, o.state)
	override(&cfg.Listen, o.listen)
	override(&cfg.LogLevel, o.logLevel)
	override(&cfg.ShimBinary, o.shim)
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func newLogger(cfg config.Config) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(os.Stderr, hopts))
	}
	return slog.New(slog.NewTextHandler(os.Stderr, hopts))
}

// serveUntilSignal runs the agent until SIGINT or SIGTERM. Shutting down the
// agent leaves every container running: the shims own them.
func serveUntilSignal(cfg config.Config) error {
	log := newLogger(cfg)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	err := serve(ctx, cfg, log)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
