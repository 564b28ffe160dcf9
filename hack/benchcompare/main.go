// Command benchcompare measures berth against containerd on the same CRI workloads in one run.
// hack/bench-compare.sh builds it, starts both runtimes and drives it:
//
//	benchcompare registry --certs-dir DIR [--pidfile F]
//	    builds the test images (busybox, a static pause, a ~200 MB 5-layer image), serves them
//	    on 127.0.0.1 as bench.invalid/berth/*, writes DIR/bench.invalid/hosts.toml, prints
//	    "serving on ADDR" and runs until SIGTERM or SIGINT.
//	benchcompare run --berth SOCK --berth-pid PID --berth-state DIR
//	    --containerd SOCK --containerd-pid PID --containerd-state DIR --out DIR [--quick] [--pods N] [--containers N]
//	    runs every workload on both runtimes, alternating them per round, then prints the table
//	    and writes DIR/results.json and DIR/ratios.png.
//	benchcompare chart RESULTS.json OUT.png
//	    draws the chart again from a results file.
//	benchcompare profile --berth SOCK --berth-pid PID --berth-state DIR --berth-root DIR
//	    --berth-bin BIN --metrics ADDR --out DIR [--seconds N] [--workloads a,b]
//	    profiles workloads on berth alone (see profile.go); hack/bench-compare.sh --profile.
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "registry":
		err = serveRegistry(os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	case "chart":
		err = redraw(os.Args[2:])
	case "profile":
		err = profile(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: benchcompare registry --certs-dir DIR [--pidfile F]")
	fmt.Fprintln(os.Stderr, "       benchcompare chart RESULTS.json OUT.png")
	fmt.Fprintln(os.Stderr, "       benchcompare profile --berth SOCK --berth-pid PID --berth-state DIR --berth-root DIR --berth-bin BIN --metrics ADDR --out DIR [--seconds N] [--workloads a,b]")
	fmt.Fprintln(os.Stderr, "       benchcompare run --berth SOCK --berth-pid PID --berth-state DIR --containerd SOCK --containerd-pid PID --containerd-state DIR --out DIR [--quick] [--pods N] [--containers N]")
	os.Exit(2)
}
