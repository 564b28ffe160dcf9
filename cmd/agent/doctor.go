package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"text/tabwriter"
	"time"

	"github.com/berth-runtime/berth/pkg/config"
	"github.com/berth-runtime/berth/pkg/cri/server"
)

// errDoctorFound makes `berth doctor` exit non-zero when something is left unresolved.
var errDoctorFound = errors.New("doctor found problems")

// doctorCommand handles `berth doctor [--fix] [--json] [--shared-node]`: it compares the
// ledger in cri/meta.db with the node and lists what nothing owns and what the ledger claims
// that the node lacks. bbolt allows one writer, so it runs only while the agent is stopped.
func doctorCommand(cfg config.Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("doctor", flag.ContinueOnError)
	fix := fs.Bool("fix", false, "release what nothing owns, through the agent's own release path")
	asJSON := fs.Bool("json", false, "print the findings as JSON")
	shared := fs.Bool("shared-node", false, "other agents share this node: judge only cgroups and iptables rules of ids this agent's directories name")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := refuseRunningAgent(cfg); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	imgs, err := openImages(cfg, log)
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	defer imgs.Close()
	svc, err := server.New(server.Options{Config: cfg, Images: imgs, Logger: log, Offline: true})
	if err != nil {
		return fmt.Errorf("doctor: %w", err)
	}
	defer svc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	rep, err := svc.Doctor(ctx, server.DoctorOptions{Fix: *fix, SharedNode: *shared, Images: imgs})
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		printFindings(stdout, rep)
	}
	if n := rep.Unresolved(); n > 0 {
		return fmt.Errorf("%w: %d unresolved", errDoctorFound, n)
	}
	return nil
}

// refuseRunningAgent fails when an agent answers on the CRI or admin socket: it holds
// meta.db, and a second writer would corrupt what the doctor compares.
func refuseRunningAgent(cfg config.Config) error {
	for _, sock := range []string{cfg.Listen, adminSocket(cfg)} {
		c, err := net.DialTimeout("unix", sock, time.Second)
		if err == nil {
			c.Close()
			return fmt.Errorf("doctor: an agent is serving on %s; stop it first (the doctor opens its stores, which allow one writer)", sock)
		}
	}
	return nil
}

func printFindings(w io.Writer, rep server.DoctorReport) {
	if len(rep.Findings) == 0 {
		fmt.Fprintln(w, "doctor: the ledger and the node agree")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROBLEM\tKIND\tPATH\tOWNER\tDETAIL\tFIX")
	for _, f := range rep.Findings {
		fixed := ""
		switch {
		case f.Fixed:
			fixed = "released"
		case f.FixErr != "":
			fixed = "failed: " + f.FixErr
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", f.Problem, f.Kind, f.Path, f.Owner, f.Detail, fixed)
	}
	tw.Flush()
	fmt.Fprintf(w, "doctor: %d findings, %d unresolved\n", len(rep.Findings), rep.Unresolved())
}
