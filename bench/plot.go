package bench

import (
	"fmt"
	"image/color"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// WritePlots draws dir/throughput.png (samples/s against batch size, one panel per case, one
// line per provider and path) and dir/throughput-latency.png (p50 solid and p99 dashed
// against batch size), and returns their paths.
func (rep *ThroughputReport) WritePlots(dir string) ([]string, error) {
	cases := rep.cases()
	if len(cases) == 0 {
		return nil, fmt.Errorf("bench: nothing measured to plot")
	}
	series := rep.series()
	thr := make([]*plot.Plot, len(cases))
	lat := make([]*plot.Plot, len(cases))
	for i, c := range cases {
		thr[i] = newPanel(c, "batch size", "samples/s")
		lat[i] = newPanel(c, "batch size", "latency per call (ms)")
		for si, s := range series {
			var xy, p50, p99 plotter.XYs
			for _, pt := range rep.Points {
				if pt.Case != c || string(pt.Provider) != s.provider || pt.Path != s.path || pt.Error != "" || pt.SamplesPerSec <= 0 {
					continue
				}
				xy = append(xy, plotter.XY{X: float64(pt.Batch), Y: pt.SamplesPerSec})
				p50 = append(p50, plotter.XY{X: float64(pt.Batch), Y: math.Max(pt.Latency.P50, 1e-3)})
				p99 = append(p99, plotter.XY{X: float64(pt.Batch), Y: math.Max(pt.Latency.P99, 1e-3)})
			}
			if len(xy) == 0 {
				continue
			}
			name := s.provider + " " + string(s.path)
			if err := addLine(thr[i], xy, name, plotutil.Color(si), nil, si); err != nil {
				return nil, err
			}
			if err := addLine(lat[i], p50, name+" p50", plotutil.Color(si), nil, si); err != nil {
				return nil, err
			}
			if err := addLine(lat[i], p99, name+" p99", plotutil.Color(si), []vg.Length{vg.Points(4), vg.Points(3)}, si); err != nil {
				return nil, err
			}
		}
		for _, p := range []*plot.Plot{thr[i], lat[i]} {
			logAxes(p, rep.Batches)
		}
	}
	a := filepath.Join(dir, ThroughputPlot)
	b := filepath.Join(dir, ThroughputLatencyPNG)
	if err := saveGrid(a, thr, 3); err != nil {
		return nil, err
	}
	if err := saveGrid(b, lat, 3); err != nil {
		return nil, err
	}
	return []string{a, b}, nil
}

// cases lists the measured cases in the order first measured.
func (rep *ThroughputReport) cases() []string {
	var out []string
	for _, pt := range rep.Points {
		if !slices.Contains(out, pt.Case) {
			out = append(out, pt.Case)
		}
	}
	return out
}

type seriesKey struct {
	provider string
	path     Path
}

// series lists provider and path pairs, the same colours in every panel.
func (rep *ThroughputReport) series() []seriesKey {
	var out []seriesKey
	for _, pt := range rep.Points {
		k := seriesKey{string(pt.Provider), pt.Path}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func newPanel(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Legend.Left = true
	p.Legend.TextStyle.Font.Size = vg.Points(8)
	p.Add(plotter.NewGrid())
	return p
}

func addLine(p *plot.Plot, xy plotter.XYs, name string, c color.Color, dashes []vg.Length, shape int) error {
	l, pts, err := plotter.NewLinePoints(xy)
	if err != nil {
		return fmt.Errorf("bench: plot: %w", err)
	}
	l.Color = c
	l.Dashes = dashes
	l.Width = vg.Points(1.5)
	pts.Color = c
	pts.Shape = plotutil.Shape(shape)
	p.Add(l, pts)
	p.Legend.Add(name, l, pts)
	return nil
}

// logAxes puts both axes on log scales, with ticks at the batch sizes.
func logAxes(p *plot.Plot, batches []int) {
	if p.Y.Min <= 0 || p.Y.Max <= 0 || math.IsInf(p.Y.Min, 0) || p.Y.Min > p.Y.Max {
		return // nothing drawn
	}
	p.X.Scale = plot.LogScale{}
	var ticks plot.ConstantTicks
	for _, b := range batches {
		ticks = append(ticks, plot.Tick{Value: float64(b), Label: strconv.Itoa(b)})
	}
	p.X.Tick.Marker = ticks
	lo, hi := float64(slices.Min(batches)), float64(slices.Max(batches))
	p.X.Min, p.X.Max = math.Min(p.X.Min, lo)/1.3, math.Max(p.X.Max, hi)*1.3
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	p.Y.Min, p.Y.Max = p.Y.Min/1.5, p.Y.Max*2 // room for the legend
}

// saveGrid draws panels in rows of cols into one PNG.
func saveGrid(path string, panels []*plot.Plot, cols int) error {
	cols = min(cols, len(panels))
	rows := (len(panels) + cols - 1) / cols
	grid := make([][]*plot.Plot, rows)
	for r := range grid {
		grid[r] = make([]*plot.Plot, cols)
		for c := range grid[r] {
			if i := r*cols + c; i < len(panels) {
				grid[r][c] = panels[i]
			}
		}
	}
	w, h := vg.Points(float64(360*cols)), vg.Points(float64(300*rows))
	img := vgimg.New(w, h)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: cols, PadX: vg.Points(12), PadY: vg.Points(12),
		PadTop: vg.Points(8), PadBottom: vg.Points(8), PadLeft: vg.Points(8), PadRight: vg.Points(8)}
	canvases := plot.Align(grid, tiles, dc)
	for r := range grid {
		for c := range grid[r] {
			if grid[r][c] != nil {
				grid[r][c].Draw(canvases[r][c])
			}
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if _, err := (vgimg.PngCanvas{Canvas: img}).WriteTo(f); err != nil {
		f.Close()
		return fmt.Errorf("bench: write %s: %w", path, err)
	}
	return f.Close()
}

// WritePlots draws dir/http.png: each request's latency over the run, by kind, and the p50,
// p90 and p99 of each kind; it returns its path.
func (rep *HTTPReport) WritePlots(dir string) ([]string, error) {
	if len(rep.samples) == 0 {
		return nil, fmt.Errorf("bench: no requests to plot")
	}
	kinds := []string{}
	for _, k := range append(slices.Clone(recommendKinds), KindFeedback) {
		if rep.ByKind[k] != nil {
			kinds = append(kinds, k)
		}
	}
	over := newPanel("latency over the run", "seconds since start", "latency (ms)")
	// at most ~20000 points, evenly thinned, so that the picture stays readable
	step := max(1, len(rep.samples)/20000)
	for ki, k := range kinds {
		var xy plotter.XYs
		for i := 0; i < len(rep.samples); i += step {
			s := rep.samples[i]
			if s.kind == k {
				xy = append(xy, plotter.XY{X: s.start.Seconds(), Y: math.Max(float64(s.latency)/1e6, 1e-3)})
			}
		}
		if len(xy) == 0 {
			continue
		}
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return nil, fmt.Errorf("bench: plot: %w", err)
		}
		sc.Color = plotutil.Color(ki)
		sc.Shape = draw.CircleGlyph{}
		sc.Radius = vg.Points(1.2)
		over.Add(sc)
		over.Legend.Add(k, sc)
	}
	if over.Y.Min > 0 {
		over.Y.Scale = plot.LogScale{}
		over.Y.Tick.Marker = plot.LogTicks{Prec: -1}
		over.Y.Max *= 3
	}
	bars := newPanel("latency percentiles by kind", "", "latency (ms)")
	width := vg.Points(12)
	for qi, q := range []struct {
		name string
		get  func(Summary) float64
	}{{"p50", func(s Summary) float64 { return s.P50 }}, {"p90", func(s Summary) float64 { return s.P90 }},
		{"p99", func(s Summary) float64 { return s.P99 }}} {
		vals := make(plotter.Values, len(kinds))
		for i, k := range kinds {
			vals[i] = q.get(rep.ByKind[k].Latency)
		}
		bc, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return nil, fmt.Errorf("bench: plot: %w", err)
		}
		bc.Color = plotutil.Color(qi + 4)
		bc.LineStyle.Width = 0
		bc.Offset = width * vg.Length(qi-1)
		bars.Add(bc)
		bars.Legend.Add(q.name, bc)
	}
	bars.NominalX(kinds...)
	bars.Legend.Left = false
	path := filepath.Join(dir, HTTPPlot)
	if err := saveGrid(path, []*plot.Plot{over, bars}, 2); err != nil {
		return nil, err
	}
	return []string{path}, nil
}
