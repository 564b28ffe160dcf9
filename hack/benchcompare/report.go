package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
)

// Row is one line of the table: an operation measured on both runtimes.
type Row struct {
	Op           string  `json:"op"`
	Unit         string  `json:"unit"`
	HigherBetter bool    `json:"higher_is_better"`
	N            int     `json:"samples"` // per runtime (the smaller count)
	BerthMedian  float64 `json:"berth_median"`
	BerthP90     float64 `json:"berth_p90"`
	CtrdMedian   float64 `json:"containerd_median"`
	CtrdP90      float64 `json:"containerd_p90"`
	Ratio        float64 `json:"ratio"` // berth median / containerd median
}

// Better says whether berth wins this row.
func (r Row) Better() bool {
	if r.HigherBetter {
		return r.Ratio > 1
	}
	return r.Ratio < 1
}

// quantile is the q-quantile by linear interpolation between closest ranks.
func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	pos := q * float64(len(s)-1)
	lo := int(math.Floor(pos))
	hi := int(math.Ceil(pos))
	return s[lo] + (s[hi]-s[lo])*(pos-float64(lo))
}

// unitOf derives the unit and direction from the op name.
func unitOf(op string) (string, bool) {
	switch {
	case strings.HasPrefix(op, "pods/s"):
		return "pods/s", true
	case strings.Contains(op, "(MiB)"):
		return "MiB", false
	case strings.HasPrefix(op, "per-pod processes"):
		return "count", false
	}
	return "ms", false
}

// rows turns the samples into table rows, in the order the ops were first measured.
func rows(res *Results, order []string, a, b string) []Row {
	var out []Row
	for _, op := range order {
		byRT := res.samples[op]
		if len(byRT[a]) == 0 || len(byRT[b]) == 0 {
			continue
		}
		unit, hb := unitOf(op)
		r := Row{Op: op, Unit: unit, HigherBetter: hb, N: min(len(byRT[a]), len(byRT[b])),
			BerthMedian: quantile(byRT[a], 0.5), BerthP90: quantile(byRT[a], 0.9),
			CtrdMedian: quantile(byRT[b], 0.5), CtrdP90: quantile(byRT[b], 0.9)}
		r.Ratio = r.BerthMedian / r.CtrdMedian
		out = append(out, r)
	}
	return out
}

func printTable(w io.Writer, rs []Row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tunit\tn\tberth med\tberth p90\tcontainerd med\tcontainerd p90\tberth/containerd\t")
	for _, r := range rs {
		mark := ""
		if r.Better() {
			mark = " (berth better)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f%s\t\n", r.Op, r.Unit, r.N,
			r.BerthMedian, r.BerthP90, r.CtrdMedian, r.CtrdP90, r.Ratio, mark)
	}
	tw.Flush()
}

// Report is the JSON file: the environment, the rows and every raw sample.
type Report struct {
	Params   Params                          `json:"params"`
	Versions map[string]string               `json:"versions"`
	Rows     []Row                           `json:"rows"`
	Samples  map[string]map[string][]float64 `json:"samples"`
}

func writeJSON(path string, rep Report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("marshal results: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// redraw draws the chart of a results file written by run.
func redraw(args []string) error {
	if len(args) != 2 {
		return fmt.Errorf("chart: want RESULTS.json OUT.png")
	}
	b, err := os.ReadFile(args[0])
	if err != nil {
		return fmt.Errorf("chart: %w", err)
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return fmt.Errorf("chart: parse %s: %w", args[0], err)
	}
	return drawChart(args[1], rep.Rows)
}
