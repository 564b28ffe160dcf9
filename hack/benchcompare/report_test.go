package main

import (
	"image/png"
	"math"
	"os"
	"path/filepath"
	"testing"
)

func TestQuantile(t *testing.T) {
	v := []float64{5, 1, 4, 2, 3}
	if got := quantile(v, 0.5); got != 3 {
		t.Errorf("median of 1..5 = %v, want 3", got)
	}
	if got := quantile(v, 0.9); math.Abs(got-4.6) > 1e-9 {
		t.Errorf("p90 of 1..5 = %v, want 4.6", got)
	}
	if got := quantile([]float64{1, 2}, 0.5); got != 1.5 {
		t.Errorf("median of 1,2 = %v, want 1.5", got)
	}
	if v[0] != 5 {
		t.Errorf("quantile sorted its input in place: %v", v)
	}
	if !math.IsNaN(quantile(nil, 0.5)) {
		t.Error("quantile of nothing is not NaN")
	}
}

func TestRowsDirection(t *testing.T) {
	res := &Results{}
	for _, v := range []float64{10, 20, 30} {
		res.add("RunPodSandbox (CNI)", "berth", v)
		res.add("RunPodSandbox (CNI)", "containerd", 2*v)
		res.add("pods/s, 4 workers", "berth", v)
		res.add("pods/s, 4 workers", "containerd", 2*v)
	}
	res.add("only berth", "berth", 1)
	rs := rows(res, res.order, "berth", "containerd")
	if len(rs) != 2 {
		t.Fatalf("got %d rows, want 2 (an op measured on one runtime only has no ratio): %+v", len(rs), rs)
	}
	lat, tput := rs[0], rs[1]
	if lat.Ratio != 0.5 || lat.Unit != "ms" || !lat.Better() {
		t.Errorf("latency row %+v: want ratio 0.5 in ms, berth better", lat)
	}
	if tput.Ratio != 0.5 || tput.Unit != "pods/s" || tput.Better() {
		t.Errorf("throughput row %+v: want ratio 0.5 in pods/s, berth worse", tput)
	}
}

func TestDrawChart(t *testing.T) {
	rs := []Row{
		{Op: "a", Ratio: 0.25}, {Op: "b", Ratio: 40}, {Op: "c", Ratio: math.NaN()},
		{Op: "pods/s", HigherBetter: true, Ratio: 1.5},
	}
	path := filepath.Join(t.TempDir(), "c.png")
	if err := drawChart(path, rs); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("chart is not a PNG: %v", err)
	}
	if h := img.Bounds().Dy(); h != headHeight+len(rs)*rowHeight+footHeight {
		t.Errorf("chart height %d does not fit %d rows", h, len(rs))
	}
	// Row "a" (ratio 1/4, lower is better) has a green bar left of the ratio=1 line.
	y := headHeight + rowHeight/2
	found := false
	one := (labelWidth + chartWidth) / 2 // the ratio=1 line: the middle of the plot
	for x := labelWidth; x < one-1; x++ {
		if img.At(x, y) == colBetter {
			found = true
			break
		}
	}
	if !found {
		t.Error("no green bar left of 1 for a ratio of 0.25 on a lower-is-better row")
	}
}
