package throughput

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/ort"
)

// File names written into an output folder.
const (
	JSONFile        = "throughput.json"
	PlotFile        = "throughput.png"
	LatencyPlotFile = "throughput-latency.png"
)

// WriteJSON writes the report as dir/throughput.json and returns its path.
func (rep *Report) WriteJSON(dir string) (string, error) {
	return report.WriteJSON(dir, JSONFile, rep)
}

// WriteTable prints the report for people: the setup, one row per point, the CUDA/CPU
// ratios, and what each case's sample is.
func (rep *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	what := rep.Bundle
	if what == "" {
		what = rep.Graph
	} else if rep.BundleName != "" {
		what += " (" + rep.BundleName + ")"
	}
	fmt.Fprintf(&b, "throughput of %s\n", what)
	fmt.Fprintf(&b, "onnxruntime %s (%s); %d CPUs", rep.ONNXRuntime, rep.Library, rep.Host.CPUs)
	if rep.Host.CPUModel != "" {
		fmt.Fprintf(&b, " (%s)", rep.Host.CPUModel)
	}
	fmt.Fprintf(&b, "; %gs per point\n", rep.DurationS)
	for _, p := range rep.Providers {
		state := "usable"
		if !p.Usable {
			state = "UNUSABLE, not measured"
		}
		fmt.Fprintf(&b, "provider %-4s %s: %s\n", p.Name, state, p.Reason)
	}
	b.WriteString("\nraw: Session.Run on a prebuilt batch, one caller; batcher: B callers of one sample through engine/batch;\n" +
		"engine: B callers through recommend.Engine (preprocessing included). Latency is per call.\n\n")
	t := report.NewTable("case", "provider", "path", ">batch", ">samples/s", ">p50 ms", ">p99 ms", ">rows/run", ">vs raw")
	prev := ""
	for _, pt := range rep.Points {
		key := string(pt.Provider) + pt.Case
		if prev != "" && key != prev {
			t.Gap()
		}
		prev = key
		if pt.Error != "" {
			t.Add(pt.Case, string(pt.Provider), string(pt.Path), strconv.Itoa(pt.Batch), "error: "+report.OneLine(pt.Error, 80))
			continue
		}
		vs := ""
		if pt.Path != PathRaw && pt.VsRaw > 0 {
			vs = fmt.Sprintf("%.2f", pt.VsRaw)
		}
		rows := ""
		if pt.MeanRows > 0 {
			rows = fmt.Sprintf("%.1f", pt.MeanRows)
		}
		t.Add(pt.Case, string(pt.Provider), string(pt.Path), strconv.Itoa(pt.Batch),
			report.FmtRate(pt.SamplesPerSec), report.FmtMs(pt.Latency.P50), report.FmtMs(pt.Latency.P99), rows, vs)
	}
	t.Write(&b)
	if len(rep.Ratios) > 0 {
		b.WriteString("\nCUDA/CPU (samples/s):\n")
		t := report.NewTable("case", "path", ">batch", ">cuda", ">cpu", ">cuda/cpu")
		for _, r := range rep.Ratios {
			t.Add(r.Case, string(r.Path), strconv.Itoa(r.Batch), report.FmtRate(r.CUDA), report.FmtRate(r.CPU), fmt.Sprintf("%.1fx", r.Ratio))
		}
		t.Write(&b)
	} else if slices.ContainsFunc(rep.Providers, func(p ort.ProviderStatus) bool { return p.Name == ort.ProviderCUDA && !p.Usable }) {
		b.WriteString("\nCUDA/CPU: not measured (cuda unusable, see above)\n")
	}
	if len(rep.Inputs) > 0 {
		b.WriteString("\none sample:\n")
		for _, k := range report.SortedKeys(rep.Inputs) {
			fmt.Fprintf(&b, "  %-14s %s\n", k, rep.Inputs[k])
		}
	}
	if len(rep.Notes) > 0 {
		b.WriteString("notes:\n")
		for _, k := range report.SortedKeys(rep.Notes) {
			fmt.Fprintf(&b, "  %-14s %s\n", k, rep.Notes[k])
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePlots draws dir/throughput.png (samples/s against batch size, one panel per case, one
// line per provider and path) and dir/throughput-latency.png (p50 solid and p99 dashed
// against batch size), and returns their paths.
func (rep *Report) WritePlots(dir string) ([]string, error) {
	cases := rep.cases()
	if len(cases) == 0 {
		return nil, fmt.Errorf("bench: nothing measured to plot")
	}
	series := rep.series()
	thr := make([]*plot.Plot, len(cases))
	lat := make([]*plot.Plot, len(cases))
	for i, c := range cases {
		thr[i] = report.NewPanel(c, "batch size", "samples/s")
		lat[i] = report.NewPanel(c, "batch size", "latency per call (ms)")
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
			if err := report.AddLine(thr[i], xy, name, plotutil.Color(si), nil, si); err != nil {
				return nil, err
			}
			if err := report.AddLine(lat[i], p50, name+" p50", plotutil.Color(si), nil, si); err != nil {
				return nil, err
			}
			if err := report.AddLine(lat[i], p99, name+" p99", plotutil.Color(si), []vg.Length{vg.Points(4), vg.Points(3)}, si); err != nil {
				return nil, err
			}
		}
		for _, p := range []*plot.Plot{thr[i], lat[i]} {
			logAxes(p, rep.Batches)
		}
	}
	a := filepath.Join(dir, PlotFile)
	b := filepath.Join(dir, LatencyPlotFile)
	if err := report.SaveGrid(a, thr, 3); err != nil {
		return nil, err
	}
	if err := report.SaveGrid(b, lat, 3); err != nil {
		return nil, err
	}
	return []string{a, b}, nil
}

// cases lists the measured cases in the order first measured.
func (rep *Report) cases() []string {
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
func (rep *Report) series() []seriesKey {
	var out []seriesKey
	for _, pt := range rep.Points {
		k := seriesKey{string(pt.Provider), pt.Path}
		if !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
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
