package load

import (
	"fmt"
	"io"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/llm4rec/llm4rec/bench/report"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// File names written into an output folder.
const (
	JSONFile = "http.json"
	PlotFile = "http.png"
)

// WriteJSON writes the report as dir/http.json and returns its path.
func (rep *Report) WriteJSON(dir string) (string, error) {
	return report.WriteJSON(dir, JSONFile, rep)
}

// WriteTable prints the report for people: totals, one row per request kind, statuses and
// errors.
func (rep *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s", rep.URL, rep.Mode)
	if rep.Mode == "open-loop" {
		fmt.Fprintf(&b, " at %g requests/s", rep.RateAsked)
		if rep.Concurrency > 0 {
			fmt.Fprintf(&b, " (at most %d in flight)", rep.Concurrency)
		}
	} else {
		fmt.Fprintf(&b, " with %d callers", rep.Concurrency)
	}
	fmt.Fprintf(&b, ", %gs; mix %s, feedback share %g\n", rep.DurationS, rep.Mix, rep.FeedbackShare)
	content := "distinct queries, images and audio per request"
	if !rep.UniqueContent {
		content = "queries, images and audio repeat (server caches may answer)"
	}
	fmt.Fprintf(&b, "data: %s; %s\n", rep.Data, content)
	pct := 0.0
	if rep.Requests > 0 {
		pct = 100 * float64(rep.OK) / float64(rep.Requests)
	}
	fmt.Fprintf(&b, "requests %d in %.2fs: rate %s/s, ok %d (%.1f%%), throughput %s/s\n\n",
		rep.Requests, rep.Seconds, report.FmtRate(rep.Rate), rep.OK, pct, report.FmtRate(rep.Throughput))
	t := report.NewTable("kind", ">requests", ">ok", ">p50 ms", ">p90 ms", ">p99 ms", ">max ms", "status")
	row := func(name string, n, ok int, s report.Summary, st map[string]int) {
		t.Add(name, strconv.Itoa(n), strconv.Itoa(ok), report.FmtMs(s.P50), report.FmtMs(s.P90), report.FmtMs(s.P99), report.FmtMs(s.Max), statusLine(st))
	}
	for _, k := range append(slices.Clone(recommendKinds), KindFeedback) {
		if ks := rep.ByKind[k]; ks != nil {
			row(k, ks.Requests, ks.OK, ks.Latency, ks.Status)
		}
	}
	row("all", rep.Requests, rep.OK, rep.Latency, rep.Status)
	t.Write(&b)
	if rep.OK > 0 && rep.OK < rep.Requests {
		s := rep.LatencyOK
		fmt.Fprintf(&b, "2xx only: p50 %s, p90 %s, p99 %s, max %s ms\n", report.FmtMs(s.P50), report.FmtMs(s.P90), report.FmtMs(s.P99), report.FmtMs(s.Max))
	}
	if len(rep.Errors) > 0 {
		b.WriteString("\nerrors:\n")
		type kv struct {
			k string
			v int
		}
		var es []kv
		for k, v := range rep.Errors {
			es = append(es, kv{k, v})
		}
		sort.Slice(es, func(i, j int) bool { return es[i].v > es[j].v || (es[i].v == es[j].v && es[i].k < es[j].k) })
		for _, e := range es {
			fmt.Fprintf(&b, "  %6d  %s\n", e.v, e.k)
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// statusLine writes statuses as "200:96 503:4", sorted.
func statusLine(st map[string]int) string {
	var parts []string
	for _, k := range report.SortedKeys(st) {
		parts = append(parts, fmt.Sprintf("%s:%d", k, st[k]))
	}
	return strings.Join(parts, " ")
}

// WritePlots draws dir/http.png: each request's latency over the run, by kind, and the p50,
// p90 and p99 of each kind; it returns its path.
func (rep *Report) WritePlots(dir string) ([]string, error) {
	if len(rep.samples) == 0 {
		return nil, fmt.Errorf("bench: no requests to plot")
	}
	kinds := []string{}
	for _, k := range append(slices.Clone(recommendKinds), KindFeedback) {
		if rep.ByKind[k] != nil {
			kinds = append(kinds, k)
		}
	}
	over := report.NewPanel("latency over the run", "seconds since start", "latency (ms)")
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
	bars := report.NewPanel("latency percentiles by kind", "", "latency (ms)")
	width := vg.Points(12)
	for qi, q := range []struct {
		name string
		get  func(report.Summary) float64
	}{{"p50", func(s report.Summary) float64 { return s.P50 }}, {"p90", func(s report.Summary) float64 { return s.P90 }},
		{"p99", func(s report.Summary) float64 { return s.P99 }}} {
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
	path := filepath.Join(dir, PlotFile)
	if err := report.SaveGrid(path, []*plot.Plot{over, bars}, 2); err != nil {
		return nil, err
	}
	return []string{path}, nil
}
