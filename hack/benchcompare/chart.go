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
	chartWidth  = 1200
	labelWidth  = 320 // operation names, right-aligned against the plot
	valueWidth  = 120 // room for the ratio printed at each end of the scale
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
	colEqual  = color.RGBA{160, 160, 160, 255} // within 2%
)

// drawChart writes a horizontal bar chart of berth/containerd per row on a log2 scale
// centred on the black ratio=1 line: bars go left below 1 and right above it. Green where
// berth is better (the direction depends on the row), red where containerd is, grey when
// they are within 2%. Ratios beyond the scale are drawn to its edge with their value.
func drawChart(path string, rs []Row) error {
	h := headHeight + len(rs)*rowHeight + footHeight
	img := image.NewRGBA(image.Rect(0, 0, chartWidth, h))
	draw.Draw(img, img.Bounds(), &image.Uniform{colBG}, image.Point{}, draw.Src)

	// The scale spans 2^-span .. 2^span, span the largest |log2 ratio| rounded up, 1 to 5.
	span := 1.0
	for _, r := range rs {
		if l := math.Abs(math.Log2(r.Ratio)); !math.IsNaN(l) && !math.IsInf(l, 0) && l > span {
			span = math.Ceil(l)
		}
	}
	span = math.Min(span, 5)
	plotX0 := labelWidth + valueWidth/2
	plotX1 := chartWidth - valueWidth/2
	xOf := func(v float64) int {
		l := math.Max(-span, math.Min(span, math.Log2(v)))
		return plotX0 + int(float64(plotX1-plotX0)*(l+span)/(2*span))
	}

	text(img, chartMargin, 20, "berth / containerd, median per operation, log2 scale (green: berth better; red: containerd better; grey: within 2%)", colText)
	text(img, chartMargin, 38, "ms and MiB rows: lower is better; pods/s rows: higher is better", colText)

	top, bottom := headHeight, headHeight+len(rs)*rowHeight
	for i := range rs {
		y := top + i*rowHeight
		if i%2 == 1 {
			fill(img, 0, y, chartWidth, y+rowHeight, colStripe)
		}
	}
	// Grid lines at every power of two.
	for e := -span; e <= span; e++ {
		x := xOf(math.Exp2(e))
		fill(img, x, top, x+1, bottom, colGrid)
		s := fmt.Sprintf("%g", math.Exp2(e))
		if e < 0 {
			s = fmt.Sprintf("1/%g", math.Exp2(-e))
		}
		text(img, x-textWidth(s)/2, bottom+16, s, colText)
	}
	x1 := xOf(1)
	for i, r := range rs {
		y := top + i*rowHeight
		base := y + rowHeight/2 + 5
		label := r.Op
		if textWidth(label) > labelWidth-2*chartMargin {
			label = label[:(labelWidth-2*chartMargin)/7-1] + "~"
		}
		text(img, labelWidth-chartMargin-textWidth(label), base, label, colText)
		v := r.Ratio
		if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
			text(img, x1+6, base, "n/a", colText)
			continue
		}
		c := colWorse
		switch {
		case math.Abs(v-1) < 0.02:
			c = colEqual
		case r.Better():
			c = colBetter
		}
		xv := xOf(v)
		by := y + (rowHeight-barHeight)/2
		fill(img, x1, by, xv, by+barHeight, c)
		s := fmt.Sprintf("%.2f", v)
		if v < 1 {
			text(img, xv-6-textWidth(s), base, s, colText)
		} else {
			text(img, xv+6, base, s, colText)
		}
	}
	fill(img, x1-1, top-4, x1+1, bottom+4, colOne)
	text(img, plotX0, bottom+34, "ratio berth/containerd (1 = equal)", colText)

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

func textWidth(s string) int { return font.MeasureString(basicfont.Face7x13, s).Ceil() }

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
