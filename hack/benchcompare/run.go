package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	berthSock := fs.String("berth", "", "berth's CRI socket")
	berthPID := fs.Int("berth-pid", 0, "berth's pid")
	berthState := fs.String("berth-state", "", "berth's state dir (its shims name it)")
	berthRoot := fs.String("berth-root", "", "berth's root dir (its image store)")
	ctrdSock := fs.String("containerd", "", "containerd's CRI socket")
	ctrdPID := fs.Int("containerd-pid", 0, "containerd's pid")
	ctrdState := fs.String("containerd-state", "", "containerd's state dir (its shims name it)")
	ctrdRoot := fs.String("containerd-root", "", "containerd's root dir (its image store)")
	cgroupParent := fs.String("cgroup-parent", "/berthbench", "cgroupfs parent of every pod (per runtime below it)")
	out := fs.String("out", "", "directory for table.txt, results.json and ratios.png")
	quick := fs.Bool("quick", false, "fewer samples, pods and containers: a smoke run")
	pods := fs.Int("pods", 0, "pods per throughput run (default 200, 20 with --quick)")
	containers := fs.Int("containers", 0, "running containers for the stats calls and pods for the memory sample (default 100, 10 with --quick)")
	rounds := fs.Int("rounds", 2, "rounds; each runs both runtimes, the order reversed every round")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *berthSock == "" || *ctrdSock == "" || *berthPID == 0 || *ctrdPID == 0 || *berthState == "" || *ctrdState == "" ||
		*berthRoot == "" || *ctrdRoot == "" || *out == "" {
		return fmt.Errorf("run: --berth, --berth-pid, --berth-state, --berth-root, --containerd, --containerd-pid, --containerd-state, --containerd-root and --out are required")
	}
	p := Params{Rounds: *rounds, Singles: 10, Execs: 50, Pods: 200, Containers: 100, StatsCalls: 20, Pulls: 2}
	if *quick {
		p = Params{Rounds: *rounds, Singles: 3, Execs: 10, Pods: 20, Containers: 10, StatsCalls: 5, Pulls: 1}
	}
	if *pods > 0 {
		p.Pods = *pods
	}
	if *containers > 0 {
		p.Containers = *containers
	}
	if p.Rounds < 1 {
		return fmt.Errorf("run: --rounds must be at least 1")
	}

	berth := &Runtime{Name: "berth", PID: *berthPID, State: *berthState, Root: *berthRoot, ShimExe: "berth-shim",
		LogDir: filepath.Join(*out, "logs", "berth"), CgroupNS: *cgroupParent + "/berth"}
	ctrd := &Runtime{Name: "containerd", PID: *ctrdPID, State: *ctrdState, Root: *ctrdRoot, ShimExe: "containerd-shim-runc-v2",
		LogDir: filepath.Join(*out, "logs", "containerd"), CgroupNS: *cgroupParent + "/containerd"}
	rts := [2]*Runtime{berth, ctrd}
	versions := map[string]string{}
	for i, r := range rts {
		if err := r.dial([]string{*berthSock, *ctrdSock}[i]); err != nil {
			return err
		}
		defer r.conn.Close()
		if err := os.MkdirAll(r.LogDir, 0o755); err != nil {
			return fmt.Errorf("log dir of %s: %w", r.Name, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		v, err := r.rt.Version(ctx, &runtimeapi.VersionRequest{})
		cancel()
		if err == nil {
			versions[r.Name] = v.RuntimeName + " " + v.RuntimeVersion
		}
	}

	log.Printf("params: %+v", p)
	res := &Results{}
	start := time.Now()
	runErr := runAll(res, rts, p)
	// Whatever happened, leave no pod behind: the script stops the runtimes next.
	for _, r := range rts {
		if err := r.cleanup(); err != nil {
			log.Printf("cleanup: %v", err)
		}
	}
	if runErr != nil {
		return runErr
	}
	log.Printf("measured in %s", time.Since(start).Round(time.Second))

	rs := rows(res, res.order, berth.Name, ctrd.Name)
	var table bytes.Buffer
	printTable(&table, rs)
	os.Stdout.Write(table.Bytes())
	if err := os.WriteFile(filepath.Join(*out, "table.txt"), table.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write table: %w", err)
	}
	if err := writeJSON(filepath.Join(*out, "results.json"), Report{Params: p, Versions: versions, Rows: rs, Samples: res.samples}); err != nil {
		return err
	}
	if err := drawChart(filepath.Join(*out, "ratios.png"), rs); err != nil {
		return err
	}
	fmt.Printf("results: %s, chart: %s\n", filepath.Join(*out, "results.json"), filepath.Join(*out, "ratios.png"))
	return nil
}
