package main

import (
	"fmt"
	"image/color"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"

	"github.com/llm4rec/llm4rec/bench/report"
)

// WriteTable writes the medians and ratios for people.
func (rep *Report) WriteTable(b *strings.Builder) {
	c := rep.Config
	fmt.Fprintf(b, "bench-peers %s on %s (%d CPUs, %s): %d rounds, intra-op threads %s, numpy BLAS threads %s, FastAPI workers %d\n",
		rep.Started, rep.Host.CPUModel, rep.Host.CPUs, rep.Host.OS, c.Rounds, threadsName(c.Threads), threadsName(c.BLASThreads), c.Workers)
	if t := rep.Text; t != nil {
		fmt.Fprintf(b, "\ntext encoder (%s; 30-word queries, tokenization included), medians over rounds:\n", c.TextDuration)
		tb := report.NewTable("impl", "batch", "samples/s", "p50 ms", "p99 ms", "engine / impl")
		for _, m := range t.Medians {
			tb.Add(m.Impl, fmt.Sprint(m.Batch), report.FmtRate(m.SamplesPerS), report.FmtMs(m.P50Ms), report.FmtMs(m.P99Ms), fmt.Sprintf("%.2fx", m.EngineOver))
		}
		tb.Write(b)
		for _, e := range t.Errors {
			fmt.Fprintf(b, "error: %s\n", e)
		}
	}
	if h := rep.HTTP; h != nil {
		ok := 0
		for _, p := range h.Parity {
			if p.OK {
				ok++
			}
		}
		fmt.Fprintf(b, "\nPOST /v1/recommend (%s a point, closed loop), medians over rounds; golden top 10 matched: %d of %d:\n",
			c.HTTPDuration, ok, len(h.Parity))
		tb := report.NewTable("kind", "callers", "impl", "req/s", "p50 ms", "p99 ms", "engine/impl req/s", "engine/impl p99", "failed")
		last := ""
		for _, m := range h.Medians {
			if last != "" && last != m.Kind {
				tb.Gap()
			}
			last = m.Kind
			tb.Add(m.Kind, fmt.Sprint(m.Callers), m.Impl, report.FmtRate(m.Throughput), report.FmtMs(m.P50Ms), report.FmtMs(m.P99Ms),
				fmt.Sprintf("%.2fx", m.EngineOver), fmt.Sprintf("%.2fx", m.EngineP99Over), fmt.Sprint(m.FailedRequests))
		}
		tb.Write(b)
		for _, t := range h.Targets {
			fmt.Fprintf(b, "target at %d callers, %s: engine %.2fx the FastAPI service's req/s (want >= %.1fx: %s), p99 %.2fx its p99 (want <= %.1fx: %s)\n",
				t.Callers, t.Kind, t.ThroughputRatio, t.WantThroughput, yes(t.ThroughputTarget), t.P99Ratio, t.WantP99, yes(t.P99Target))
		}
		for _, e := range h.Errors {
			fmt.Fprintf(b, "error: %s\n", e)
		}
	}
}

func threadsName(n int) string {
	if n == 0 {
		return "default"
	}
	return fmt.Sprint(n)
}

func yes(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}

// WritePlot draws peers.png: text-encoder samples/s against batch size, and per request kind
// req/s and p99 against callers, one line per implementation.
func (rep *Report) WritePlot(path string) error {
	colors := map[string]color.Color{ImplEngine: plotutil.Color(0), ImplHugot: plotutil.Color(1), ImplPython: plotutil.Color(2), ImplFastAPI: plotutil.Color(3)}
	var panels []*plot.Plot
	if t := rep.Text; t != nil && len(t.Medians) > 0 {
		p := report.NewPanel("text encoder", "batch size", "samples/s")
		for i, impl := range []string{ImplEngine, ImplHugot, ImplPython} {
			var xy plotter.XYs
			for _, m := range t.Medians {
				if m.Impl == impl {
					xy = append(xy, plotter.XY{X: float64(m.Batch), Y: m.SamplesPerS})
				}
			}
			if len(xy) > 0 {
				if err := report.AddLine(p, xy, impl, colors[impl], nil, i); err != nil {
					return err
				}
			}
		}
		panels = append(panels, p)
	}
	if h := rep.HTTP; h != nil && len(h.Medians) > 0 {
		for _, kind := range rep.Config.Kinds {
			thr := report.NewPanel("/v1/recommend, "+kind, "callers", "req/s")
			lat := report.NewPanel("/v1/recommend, "+kind, "callers", "p99 ms")
			for i, impl := range []string{ImplEngine, ImplFastAPI} {
				var a, b plotter.XYs
				for _, m := range h.Medians {
					if m.Impl == impl && m.Kind == kind {
						a = append(a, plotter.XY{X: float64(m.Callers), Y: m.Throughput})
						b = append(b, plotter.XY{X: float64(m.Callers), Y: m.P99Ms})
					}
				}
				if len(a) == 0 {
					continue
				}
				if err := report.AddLine(thr, a, impl, colors[impl], nil, i); err != nil {
					return err
				}
				if err := report.AddLine(lat, b, impl, colors[impl], nil, i); err != nil {
					return err
				}
			}
			panels = append(panels, thr, lat)
		}
	}
	if len(panels) == 0 {
		return nil
	}
	return report.SaveGrid(path, panels, 3)
}
