// Command berth is the node agent: it serves the CRI over gRPC on a unix socket
// so that the kubelet and crictl can run pods. Subcommands: config [validate], doctor,
// images import, version, completion.
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
	fs.Visit(func(f *flag.Flag) { opts.explicitConfig = opts.explicitConfig || f.Name == "config" })
	// Commands that do not need the node's configuration to be valid.
	switch {
	case *showVersion, fs.Arg(0) == "version":
		return printVersion(stdout)
	case fs.Arg(0) == "completion":
		return completionCommand(fs.Args()[1:], stdout)
	case fs.Arg(0) == "config" && fs.Arg(1) == "validate":
		return validateCommand(opts, fs.Args()[2:], stdout)
	}
	cfg, err := opts.load()
	if err != nil {
		return err
	}
	switch cmd := fs.Arg(0); cmd {
	case "":
		return serveUntilSignal(cfg, opts)
	case "config":
		if fs.NArg() > 1 {
			return fmt.Errorf("unknown config command %q (config [validate [FILE]])", fs.Arg(1))
		}
		fmt.Fprint(stdout, cfg.String())
		return nil
	case "images":
		return imagesCommand(cfg, fs.Args()[1:], stdout)
	case "doctor":
		return doctorCommand(cfg, fs.Args()[1:], stdout)
	default:
		return fmt.Errorf("unknown command %q (commands: config [validate [FILE]], doctor [--fix], images import FILE, version, completion bash|zsh|fish)", cmd)
	}
}

// validateCommand handles `berth config validate [FILE]` (default: the --config file): it
// loads and validates the file alone, flags aside, and fails naming the first bad setting.
func validateCommand(opts *flagOptions, args []string, stdout io.Writer) error {
	if len(args) > 1 {
		return fmt.Errorf("usage: berth config validate [FILE]")
	}
	path := opts.configPath
	if len(args) == 1 {
		path = args[0]
	}
	cfg, err := config.Load(path, false)
	if err == nil {
		err = cfg.Validate()
	}
	if err != nil {
		return fmt.Errorf("%s: invalid: %w", path, err)
	}
	fmt.Fprintf(stdout, "%s: valid\n", path)
	return nil
}

// flagOptions are the flags that override the config file.
type flagOptions struct {
	configPath                    string
	explicitConfig                bool // --config was given: the file must exist
	root, state, listen, logLevel string
	logFormat, shim               string
}

func bindFlags(fs *flag.FlagSet) *flagOptions {
	o := &flagOptions{}
	fs.StringVar(&o.configPath, "config", config.DefaultPath, "config file (TOML); a missing default file is fine")
	fs.StringVar(&o.root, "root", "", "persistent state directory (default /var/lib/berth)")
	fs.StringVar(&o.state, "state", "", "runtime state directory (default /run/berth)")
	fs.StringVar(&o.listen, "listen", "", "CRI unix socket (default /run/berth/berth.sock)")
	fs.StringVar(&o.logLevel, "log-level", "", "debug, info, warn or error")
	fs.StringVar(&o.logFormat, "log-format", "", "text (logfmt) or json")
	fs.StringVar(&o.shim, "shim-binary", "", "berth-shim path (default: beside berth, then $PATH)")
	return o
}

// load reads the config file and applies the flags that were set on top. SIGHUP calls it
// again: the flags keep overriding a reloaded file.
func (o *flagOptions) load() (config.Config, error) {
	cfg, err := config.Load(o.configPath, !o.explicitConfig)
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
	override(&cfg.LogFormat, o.logFormat)
	override(&cfg.ShimBinary, o.shim)
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

// newLogger logs at a level SIGHUP may change (level) in the configured format: text is
// logfmt (key=value), json one object per line.
func newLogger(cfg config.Config, w io.Writer, level *slog.LevelVar) *slog.Logger {
	level.Set(parseLevel(cfg.LogLevel))
	hopts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, hopts))
	}
	return slog.New(slog.NewTextHandler(w, hopts))
}

// serveUntilSignal runs the agent until SIGINT or SIGTERM; SIGHUP reloads the configuration
// (reload.go). Shutting down the agent leaves every container running: the shims own them.
func serveUntilSignal(cfg config.Config, opts *flagOptions) error {
	level := new(slog.LevelVar)
	log := newLogger(cfg, os.Stderr, level)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	hup, stopHUP := notifyHUP()
	defer stopHUP()
	r := &reloader{load: opts.load, cur: cfg, level: level, log: log, hup: hup}
	err := serve(ctx, cfg, log, r)
	if errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}
