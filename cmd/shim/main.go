// Command berth-shim owns one pod's containers through libcontainer, so that
// they and their exit codes outlive the agent; it serves pkg/shim's protocol.
//
// Invocations: "berth-shim --id ID --dir DIR --runtime-root ROOT" serves;
// with --daemonize it first re-executes itself in a new session and exits.
// "berth-shim init" is libcontainer's container init and "berth-shim
// pod-init" the pod's PID-namespace init; both are re-executions of this binary.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"

	"github.com/opencontainers/runc/libcontainer"
	_ "github.com/opencontainers/runc/libcontainer/nsenter" // joins namespaces before Go starts, for "init"
	"golang.org/x/sys/unix"

	"github.com/berth-runtime/berth/pkg/runtime"
	"github.com/berth-runtime/berth/pkg/shim"
)

// init is libcontainer's hook: as "berth-shim init" this process is the
// container's init and never reaches main. It must run before main because
// nsenter's constructor already prepared the namespaces for it.
func init() {
	if len(os.Args) > 1 && os.Args[1] == "init" {
		libcontainer.Init()
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == runtime.PodInitArg {
		os.Exit(runtime.PodInitMain())
	}
	if len(os.Args) > 1 && os.Args[1] == runtime.OCIExecArg {
		os.Exit(runtime.OCIExecMain())
	}
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "berth-shim:", err)
		os.Exit(1)
	}
}

type flags struct {
	id, dir, runtimeRoot, cgroupDriver string
	ociRuntime                         string
	ociShimCgroups                     bool
	daemonize, debug                   bool
	readyFD                            int
}

func parseFlags(args []string) (flags, error) {
	var f flags
	fs := flag.NewFlagSet("berth-shim", flag.ContinueOnError)
	fs.StringVar(&f.id, "id", "", "sandbox id")
	fs.StringVar(&f.dir, "dir", "", "shim directory (socket, pid, log, exit records)")
	fs.StringVar(&f.runtimeRoot, "runtime-root", "", "libcontainer state root")
	fs.StringVar(&f.cgroupDriver, "cgroup-driver", "cgroupfs", "the agent's cgroup driver: cgroupfs or systemd")
	fs.StringVar(&f.ociRuntime, strings.TrimPrefix(shim.OCIRuntimeFlag, "--"), "", "external OCI runtime binary to run the containers with (default: libcontainer)")
	fs.BoolVar(&f.ociShimCgroups, strings.TrimPrefix(shim.OCIShimCgroupsFlag, "--"), false, "manage the external runtime's container cgroups in the shim (the runtime gets --cgroup-manager=disabled)")
	fs.BoolVar(&f.daemonize, "daemonize", false, "re-execute detached in a new session and exit")
	fs.BoolVar(&f.debug, "debug", false, "debug logging")
	fs.IntVar(&f.readyFD, strings.TrimPrefix(shim.ReadyFDFlag, "--"), -1, "descriptor to write the ready line on once serving")
	if err := fs.Parse(args); err != nil {
		return f, err
	}
	if f.id == "" || f.dir == "" || f.runtimeRoot == "" {
		return f, errors.New("--id, --dir and --runtime-root are required")
	}
	if f.cgroupDriver != "cgroupfs" && f.cgroupDriver != "systemd" {
		return f, fmt.Errorf("--cgroup-driver %q: want cgroupfs or systemd", f.cgroupDriver)
	}
	return f, nil
}

func run(args []string) error {
	f, err := parseFlags(args)
	if err != nil {
		return err
	}
	if f.daemonize {
		return shim.Daemonize(slices.DeleteFunc(slices.Clone(args), func(a string) bool {
			return a == shim.DaemonizeFlag || a == "-daemonize"
		}), f.readyFD)
	}
	level := slog.LevelInfo
	if f.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level})).With("sandbox", f.id)
	return serve(f, log)
}

func serve(f flags, log *slog.Logger) error {
	// The agent makes the directory before spawning us and removes it when it gives up on
	// this start (a timeout, a rollback): a shim starting late must not recreate it and
	// serve a sandbox nobody owns.
	if _, err := os.Stat(f.dir); err != nil {
		return fmt.Errorf("shim directory: %w (the agent gave up on this start)", err)
	}
	if err := runtime.SetSubreaper(); err != nil {
		return err
	}
	// The agent may die at any time; a closed pipe or hangup must not kill us.
	signal.Ignore(unix.SIGPIPE, unix.SIGHUP)
	systemd := f.cgroupDriver == "systemd"
	if systemd {
		// Before the socket exists: once the agent sees it, we are out of its unit.
		if err := runtime.JoinShimScope(f.id); err != nil {
			return err
		}
	}
	podInit := staticPodInit()
	log.Debug("pod init", "binary", podInit)
	mgr, err := runtime.New(runtime.Options{
		Root:           f.runtimeRoot,
		StateDir:       filepath.Join(f.dir, "containers"),
		PodInitBinary:  podInit,
		OCIRuntime:     f.ociRuntime,
		OCIRoot:        ociRoot(f),
		OCIShimCgroups: f.ociShimCgroups,
		Logger:         log,
		SystemdCgroup:  systemd,
	})
	if err != nil {
		return err
	}
	l, err := shim.Listen(f.dir)
	if err != nil {
		return err
	}
	iol, err := shim.ListenIO(f.dir)
	if err != nil {
		l.Close()
		return err
	}
	// Both sockets listen: connections wait in their backlogs until Serve takes them.
	if err := shim.SignalReady(f.readyFD); err != nil {
		log.Warn("tell the agent the shim serves", "err", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go mgr.Run(ctx)
	srv := shim.NewServer(f.id, backend{mgr}, log)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, l) }()
	go func() {
		if err := srv.ServeIO(ctx, iol); err != nil {
			log.Error("serve session streams", "err", err)
		}
	}()
	log.Info("shim serving", "pid", os.Getpid(), "dir", f.dir)

	sigc := make(chan os.Signal, 1)
	signal.Notify(sigc, unix.SIGTERM, unix.SIGINT)
	for {
		select {
		case err := <-errc:
			cleanup(f.dir)
			return err
		case <-srv.ShutdownRequested():
			// No wait for the Shutdown reply to leave: its caller takes a connection that
			// closes under it as the answer (the work was done before the reply) and waits
			// for this process to be gone.
			cancel()
			<-errc
			cleanup(f.dir)
			log.Info("shim shut down")
			return nil
		case sig := <-sigc:
			// Only a shim without live containers may go: it alone can
			// report their exits.
			if mgr.HasRunning() {
				log.Warn("ignoring signal: containers still running", "signal", sig)
				continue
			}
			log.Info("exiting on signal", "signal", sig)
			mgr.StopPodInit()
			cancel()
			<-errc
			cleanup(f.dir)
			return nil
		}
	}
}

// podInitName is the static pod init (cmd/pod-init), installed next to this binary.
const podInitName = "berth-pod-init"

// staticPodInit finds the static pod init next to this binary: "" (the shim's own pod-init
// mode) when it is not installed.
func staticPodInit() string {
	self, err := os.Executable()
	if err != nil {
		return ""
	}
	p := filepath.Join(filepath.Dir(self), podInitName)
	if unix.Access(p, unix.X_OK) != nil {
		return ""
	}
	return p
}

// ociRoot is the external runtime's --root: in the shim's directory, so that it goes with
// the pod and never meets another pod's containers.
func ociRoot(f flags) string {
	if f.ociRuntime == "" {
		return ""
	}
	return filepath.Join(f.dir, "oci")
}

func cleanup(dir string) {
	_ = os.Remove(filepath.Join(dir, "oci")) // empty once every container is deleted
	_ = os.Remove(filepath.Join(dir, shim.SocketName))
	_ = os.Remove(filepath.Join(dir, shim.PidName))
	_ = os.Remove(filepath.Join(dir, shim.IOSocketName))
}
