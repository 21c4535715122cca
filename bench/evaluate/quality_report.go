package evaluate

import (
	"cmp"
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
)

// compare lines up the model at ExportAlpha and the baselines with the export's rows.
func (rep *QualityReport) compare() {
	if rep.Export == nil {
		rep.Notes = append(rep.Notes, "the bundle has no export metrics (report.json or manifest metrics) to compare with")
		return
	}
	for _, name := range []string{RowModel, RowMostPopular, RowItemKNN} {
		r := rep.Row(name, ExportAlpha)
		e, ok := rep.Export[name]
		if r == nil || !ok {
			continue
		}
		add := func(metric string, g, x float64) {
			rep.Compare = append(rep.Compare, MetricDiff{Row: name, Metric: metric, Go: g, Export: x, Diff: g - x})
		}
		add("hr@10", r.HR, e.HR)
		add("ndcg@10", r.NDCG, e.NDCG)
		add("coverage@10", r.Coverage, e.Coverage)
		add("ild@10", r.ILD, e.ILD)
		add("arp", r.ARP, e.ARP)
		if r.GenderGap != nil && e.GenderGap != nil {
			add("gender_gap", *r.GenderGap, *e.GenderGap)
		}
		if r.AgeGap != nil && e.AgeGap != nil {
			add("age_gap", *r.AgeGap, *e.AgeGap)
		}
		if name == RowModel {
			d := r.NDCG - e.NDCG
			met := math.Abs(d) <= NDCGTolerance
			rep.NDCGDiff, rep.NDCGMet = &d, &met
		}
	}
}

// WriteJSON writes the report as dir/quality.json and returns its path.
func (rep *QualityReport) WriteJSON(dir string) (string, error) {
	return report.WriteJSON(dir, QualityJSON, rep)
}

func fmtAlpha(a *float64) string {
	if a == nil {
		return "-"
	}
	return strconv.FormatFloat(*a, 'g', -1, 64)
}

func fmtGap(g *float64) string {
	if g == nil {
		return "-"
	}
	return fmt.Sprintf("%+.4f", *g)
}

// WriteTable prints the report for people: the setup, one row per ranker with its metrics and
// NDCG by group, and the comparison with the export.
func (rep *QualityReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "quality of %s (%s v%s) on %s, %s\n", rep.Bundle, rep.BundleName, rep.BundleVersion, rep.Data, rep.Provider)
	fmt.Fprintf(&b, "protocol: %s\n", rep.Protocol)
	fmt.Fprintf(&b, "data: %s\n", rep.DataNote)
	fmt.Fprintf(&b, "IPS propensities: %s\n", rep.Propensities)
	fmt.Fprintf(&b, "ILD embeddings: %s\n\n", rep.Embeddings)
	t := report.NewTable("row", ">alpha", ">users", ">HR@10", ">NDCG@10", ">cov@10", ">ILD@10", ">ARP", ">gender gap", ">age gap", ">users/s")
	for _, r := range rep.Rows {
		t.Add(r.Name, fmtAlpha(r.Alpha), strconv.Itoa(r.Users), fmt.Sprintf("%.4f", r.HR), fmt.Sprintf("%.4f", r.NDCG),
			fmt.Sprintf("%.3f", r.Coverage), fmt.Sprintf("%.4f", r.ILD), fmt.Sprintf("%.4f", r.ARP), fmtGap(r.GenderGap),
			fmtGap(r.AgeGap), report.FmtRate(r.UsersPerSec))
	}
	t.Write(&b)
	var groups []string
	for _, r := range rep.Rows {
		for _, g := range append(report.SortedKeys(r.NDCGByGender), sortAgeBands(report.SortedKeys(r.NDCGByAge))...) {
			if !slices.Contains(groups, g) {
				groups = append(groups, g)
			}
		}
	}
	if len(groups) > 0 {
		b.WriteString("\nNDCG@10 by group:\n")
		head := []string{"row", ">alpha"}
		for _, g := range groups {
			head = append(head, ">"+g)
		}
		t := report.NewTable(head...)
		for _, r := range rep.Rows {
			cells := []string{r.Name, fmtAlpha(r.Alpha)}
			for _, g := range groups {
				v, ok := r.NDCGByGender[g]
				if !ok {
					v, ok = r.NDCGByAge[g]
				}
				cell := "-"
				if ok {
					cell = fmt.Sprintf("%.4f", v)
				}
				cells = append(cells, cell)
			}
			t.Add(cells...)
		}
		t.Write(&b)
	}
	if len(rep.Compare) > 0 {
		fmt.Fprintf(&b, "\nagainst the export (%s; the model at alpha %g, the export ranks by logits without IPS):\n", rep.ExportSource, ExportAlpha)
		t := report.NewTable("row", "metric", ">go", ">export", ">go - export")
		prev := ""
		for _, c := range rep.Compare {
			if prev != "" && c.Row != prev {
				t.Gap()
			}
			prev = c.Row
			t.Add(c.Row, c.Metric, fmt.Sprintf("%.4f", c.Go), fmt.Sprintf("%.4f", c.Export), fmt.Sprintf("%+.6f", c.Diff))
		}
		t.Write(&b)
	}
	if rep.NDCGDiff != nil {
		state := "met"
		if !*rep.NDCGMet {
			state = "NOT met"
		}
		fmt.Fprintf(&b, "\ntarget |NDCG@10(go) - NDCG@10(export)| <= %g: %+.6f, %s\n", rep.NDCGTolerance, *rep.NDCGDiff, state)
	}
	if rep.Steering != nil {
		rep.Steering.writeTable(&b)
		b.WriteByte('\n')
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "took %.1fs (load %.1fs)\n", rep.Timings["total"], rep.Timings["load"])
	_, err := io.WriteString(w, b.String())
	return err
}

// sortAgeBands orders the bands "<25", "25-34", "35-44", "45+" by age.
func sortAgeBands(bands []string) []string {
	key := func(s string) int {
		below := strings.HasPrefix(s, "<")
		n, _ := strconv.Atoi(strings.TrimRight(strings.SplitN(strings.TrimPrefix(s, "<"), "-", 2)[0], "+"))
		if below {
			n--
		}
		return n
	}
	sort.SliceStable(bands, func(i, j int) bool { return key(bands[i]) < key(bands[j]) })
	return bands
}

// WritePlots draws dir/quality.png: each metric of the model against the IPS strength, the
// baselines as flat dashed lines, and returns its path.
func (rep *QualityReport) WritePlots(dir string) ([]string, error) {
	var model []QualityRow
	for _, r := range rep.Rows {
		if r.Name == RowModel && r.Alpha != nil {
			model = append(model, r)
		}
	}
	if len(model) == 0 {
		return nil, fmt.Errorf("bench: no model row to plot")
	}
	slices.SortFunc(model, func(a, b QualityRow) int { return cmp.Compare(*a.Alpha, *b.Alpha) })
	lo, hi := *model[0].Alpha, *model[len(model)-1].Alpha
	if hi == lo {
		hi = lo + 1
	}
	type metric struct {
		title string
		get   func(QualityRow) (float64, bool)
	}
	gap := func(g *float64) (float64, bool) {
		if g == nil {
			return 0, false
		}
		return *g, true
	}
	panels := []struct {
		title   string
		metrics []metric
	}{
		{"accuracy", []metric{{"HR@10", func(r QualityRow) (float64, bool) { return r.HR, true }},
			{"NDCG@10", func(r QualityRow) (float64, bool) { return r.NDCG, true }}}},
		{"catalog coverage@10", []metric{{"coverage@10", func(r QualityRow) (float64, bool) { return r.Coverage, true }}}},
		{"average recommendation popularity", []metric{{"ARP", func(r QualityRow) (float64, bool) { return r.ARP, true }}}},
		{"intra-list diversity@10", []metric{{"ILD@10", func(r QualityRow) (float64, bool) { return r.ILD, true }}}},
		{"NDCG@10 gaps between user groups", []metric{{"gender gap", func(r QualityRow) (float64, bool) { return gap(r.GenderGap) }},
			{"age gap", func(r QualityRow) (float64, bool) { return gap(r.AgeGap) }}}},
	}
	var plots []*plot.Plot
	for _, pn := range panels {
		p := report.NewPanel(pn.title, "IPS alpha", "")
		series := 0
		for _, mt := range pn.metrics {
			var xy plotter.XYs
			for _, r := range model {
				if v, ok := mt.get(r); ok {
					xy = append(xy, plotter.XY{X: *r.Alpha, Y: v})
				}
			}
			if len(xy) == 0 {
				continue
			}
			if err := report.AddLine(p, xy, "model "+mt.title, plotutil.Color(series), nil, series); err != nil {
				return nil, err
			}
			series++
			for _, r := range rep.Rows {
				if r.Name == RowModel {
					continue
				}
				if v, ok := mt.get(r); ok {
					flat := plotter.XYs{{X: lo, Y: v}, {X: hi, Y: v}}
					if err := report.AddLine(p, flat, r.Name+" "+mt.title, plotutil.Color(series), []vg.Length{vg.Points(4), vg.Points(3)}, series); err != nil {
						return nil, err
					}
					series++
				}
			}
		}
		if p.Y.Max > p.Y.Min {
			p.Y.Max += 0.6 * (p.Y.Max - p.Y.Min) // room for the legend above the lines
		}
		plots = append(plots, p)
	}
	path := filepath.Join(dir, QualityPlot)
	if err := report.SaveGrid(path, plots, 3); err != nil {
		return nil, err
	}
	return []string{path}, nil
}
