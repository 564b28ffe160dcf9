package main

import (
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

// Chart geometry, in pixels.
const (
	chartWidth  = 1100
	labelWidth  = 400 // operation names, right-aligned against the plot
	valueWidth  = 150 // the ratio printed after each bar
	rowHeight   = 26
	headHeight  = 50
	footHeight  = 40
	barHeight   = 16
	chartMargin = 10
)

var (
	colBG     = color.RGBA{255, 255, 255, 255}
	colText   = color.RGBA{20, 20, 20, 255}
	colGrid   = color.RGBA{220, 220, 220, 255}
	colOne    = color.RGBA{0, 0, 0, 255}
	colBetter = color.RGBA{46, 139, 87, 255}   // berth better
	colWorse  = color.RGBA{205, 92, 92, 255}   // containerd better
	colStripe = color.RGBA{246, 246, 246, 255} // every other row
)

// drawChart writes a horizontal bar chart of berth/containerd per row: green where berth is
// better (the direction depends on the row), red where it is not, a black line at ratio 1.
func drawChart(path string, rs []Row) error {
	h := headHeight + len(rs)*rowHeight + footHeight
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBG}, image.Point{}, draw.Src)

	maxRatio := 2.0
	for _, r := range rs {
		if !math.IsNaN(r.Ratio) && !math.IsInf(r.Ratio, 0) && r.Ratio*1.1 > maxRatio {
			maxRatio = r.Ratio * 1.1
		}
	}
	plotX0 := labelWidth
	plotX1 := chartWidth - valueWidth
	xOf := func(v float64) int { return plotX0 + int(float64(plotX1-plotX0)*v/maxRatio) }

	text(img, chartMargin, 20, "berth / containerd, median per operation (green: berth better; red: containerd better)", colText)
	text(img, chartMargin, 38, "ms and MiB rows: lower is better; pods/s rows: higher is better", colText)

	top, bottom := headHeight, headHeight+len(rs)*rowHeight
	for i, r := range rs {
		y := top + i*rowHeight
		if i%2 == 1 {
			fill(img, 0, y, chartWidth, y+rowHeight, colStripe)
		}
		label := r.Op
		if w := font.MeasureString(basicfont.Face7x13, label).Ceil(); w > labelWidth-2*chartMargin {
			label = label[:(labelWidth-2*chartMargin)/7-1] + "~"
		}
		lw := font.MeasureString(basicfont.Face7x13, label).Ceil()
		text(img, plotX0-chartMargin-lw, y+rowHeight/2+5, label, colText)
		c := colWorse
		if r.Better() {
			c = colBetter
		}
		v := r.Ratio
		if math.IsNaN(v) || math.IsInf(v, 0) {
			text(img, plotX0+4, y+rowHeight/2+5, "n/a", colText)
			continue
		}
		by := y + (rowHeight-barHeight)/2
		fill(img, plotX0, by, xOf(v), by+barHeight, c)
		text(img, xOf(v)+6, y+rowHeight/2+5, fmt.Sprintf("%.2f", v), colText)
	}
	// Grid and axis ticks every 0.5.
	for t := 0.0; t <= maxRatio+1e-9; t += 0.5 {
		x := xOf(t)
		col := colGrid
		if t == 1 {
			continue
		}
		fill(img, x, top, x+1, bottom, col)
		s := fmt.Sprintf("%.1f", t)
		text(img, x-font.MeasureString(basicfont.Face7x13, s).Ceil()/2, bottom+16, s, colText)
	}
	x1 := xOf(1)
	fill(img, x1-1, top-4, x1+1, bottom+4, colOne)
	text(img, x1-font.MeasureString(basicfont.Face7x13, "1.0").Ceil()/2, bottom+16, "1.0", colOne)
	text(img, plotX0, bottom+34, "ratio berth/containerd (1.0 = equal)", colText)

	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write chart: %w", err)
	}
	if err := png.Encode(f, img); err != nil {
		f.Close()
		return fmt.Errorf("write chart %s: %w", path, err)
	}
	return f.Close()
}

func fill(img *image.RGBA, x0, y0, x1, y1 int, c color.Color) {
	if x1 < x0 {
		x0, x1 = x1, x0
	}
	draw.Draw(img, image.Rect(x0, y0, x1, y1), &image.Uniform{c}, image.Point{}, draw.Src)
}

// text draws s with its baseline at y.
func text(img *image.RGBA, x, y int, s string, c color.Color) {
	d := font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
