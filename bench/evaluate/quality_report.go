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
	"github.com/llm4rec/llm4rec/eval"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// compare lines up the model at ExportAlpha and the baselines with the export's rows, and the
// model at the default alpha with the export's figures there (RowModelIPS) when it has them.
func (rep *QualityReport) compare() {
	if rep.Export == nil {
		rep.Notes = append(rep.Notes, "the bundle has no export metrics (report.json or manifest metrics) to compare with")
		return
	}
	if _, ok := rep.Export[RowModelIPS]; !ok {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the export's report has no metrics.model_ips.exported (a bundle older than the "+
			"popularity correction): the model at the default alpha %g is not compared with the export", rep.DefaultAlpha))
	}
	for _, name := range []string{RowModel, RowModelIPS, RowMostPopular, RowItemKNN} {
		r := rep.Row(name, ExportAlpha)
		if name == RowModelIPS {
			r = rep.Row(RowModel, rep.DefaultAlpha)
		}
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
		d := r.NDCG - e.NDCG
		met := math.Abs(d) <= NDCGTolerance
		switch name {
		case RowModel:
			rep.NDCGDiff, rep.NDCGMet = &d, &met
		case RowModelIPS:
			rep.IPSNDCGDiff, rep.IPSNDCGMet = &d, &met
		}
	}
}

// sweep lists the model's rows as the frontier of accuracy against exposure, by alpha.
func (rep *QualityReport) sweep() {
	rep.IPSSweep = []SweepPoint{}
	for _, r := range rep.modelRows() {
		rep.IPSSweep = append(rep.IPSSweep, SweepPoint{Alpha: *r.Alpha, NDCG: r.NDCG, ARP: r.ARP, Coverage: r.Coverage,
			LongTailShare: r.LongTailShare, ExposureGini: r.ExposureGini})
	}
}

// modelRows are the model's rows by increasing alpha.
func (rep *QualityReport) modelRows() []QualityRow {
	var model []QualityRow
	for _, r := range rep.Rows {
		if r.Name == RowModel && r.Alpha != nil {
			model = append(model, r)
		}
	}
	slices.SortStableFunc(model, func(a, b QualityRow) int { return cmp.Compare(*a.Alpha, *b.Alpha) })
	return model
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
// NDCG by group, the frontier of the popularity correction, the group figures with their
// intervals, and the comparison with the export.
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
	rep.writeSweep(&b)
	rep.writeGroups(&b)
	rep.writeGroupCalibration(&b)
	if len(rep.Compare) > 0 {
		fmt.Fprintf(&b, "\nagainst the export (%s; the model at alpha %g, the export ranks by logits without IPS; %s at the default alpha %g):\n",
			rep.ExportSource, ExportAlpha, RowModelIPS, rep.DefaultAlpha)
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
	if rep.IPSNDCGDiff != nil {
		state := "met"
		if !*rep.IPSNDCGMet {
			state = "NOT met"
		}
		fmt.Fprintf(&b, "target at the default alpha %g, |NDCG@10(go) - NDCG@10(export)| <= %g: %+.6f, %s\n", rep.DefaultAlpha,
			rep.NDCGTolerance, *rep.IPSNDCGDiff, state)
	}
	if rep.Steering != nil {
		rep.Steering.writeTable(&b)
		b.WriteByte('\n')
	}
	for _, x := range []*ExplanationsReport{rep.Explanations, rep.ExplanationsAttention} {
		if x != nil {
			x.writeTable(&b)
			b.WriteByte('\n')
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "took %.1fs (load %.1fs)\n", rep.Timings["total"], rep.Timings["load"])
	_, err := io.WriteString(w, b.String())
	return err
}

// writeSweep prints the frontier: the model's accuracy and exposure at every alpha, with the
// changes from alpha 0.
func (rep *QualityReport) writeSweep(b *strings.Builder) {
	if len(rep.IPSSweep) == 0 {
		return
	}
	var base *SweepPoint
	for i, p := range rep.IPSSweep {
		if p.Alpha == 0 {
			base = &rep.IPSSweep[i]
		}
	}
	change := func(v, b0 float64) string {
		if base == nil || b0 == 0 {
			return "-"
		}
		return fmt.Sprintf("%+.1f%%", 100*(v/b0-1))
	}
	fmt.Fprintf(b, "\npopularity correction, score - alpha * log(propensity) (* the bundle's default alpha, %g):\n", rep.DefaultAlpha)
	t := report.NewTable(">alpha", ">NDCG@10", ">vs 0", ">ARP", ">vs 0", ">cov@10", ">long tail", ">exposure Gini")
	for _, p := range rep.IPSSweep {
		a := strconv.FormatFloat(p.Alpha, 'g', -1, 64)
		if p.Alpha == rep.DefaultAlpha {
			a += "*"
		}
		var n0, a0 float64
		if base != nil {
			n0, a0 = base.NDCG, base.ARP
		}
		t.Add(a, fmt.Sprintf("%.4f", p.NDCG), change(p.NDCG, n0), fmt.Sprintf("%.4f", p.ARP), change(p.ARP, a0),
			fmt.Sprintf("%.3f", p.Coverage), fmt.Sprintf("%.3f", p.LongTailShare), fmt.Sprintf("%.3f", p.ExposureGini))
	}
	t.Write(b)
}

// writeGroups prints NDCG@10 and ARP by user group with their intervals, and the gaps, at
// alpha 0 and at the default alpha (once when the default is 0).
func (rep *QualityReport) writeGroups(b *strings.Builder) {
	if len(rep.Groups) == 0 {
		return
	}
	fmt.Fprintf(b, "\nby user group, bootstrap 95%% intervals (%d resamples of the users within each group):\n", eval.Resamples)
	t := report.NewTable("alpha", "by", "group", ">users", ">NDCG@10", "95% interval", ">ARP", "95% interval")
	ci := func(c [2]float64, f string) string {
		return "[" + fmt.Sprintf(f, c[0]) + ", " + fmt.Sprintf(f, c[1]) + "]"
	}
	first := true
	for _, setting := range []string{GroupsAlpha0, GroupsDefault} {
		by, ok := rep.Groups[setting]
		if !ok || setting == GroupsDefault && rep.DefaultAlpha == 0 && rep.Groups[GroupsAlpha0] != nil {
			continue
		}
		label := "0"
		if setting == GroupsDefault || rep.DefaultAlpha == 0 {
			label = fmt.Sprintf("%g (default)", rep.DefaultAlpha)
		}
		for _, key := range []string{"gender", "age"} {
			g := by[key]
			if g == nil {
				continue
			}
			if !first {
				t.Gap()
			}
			first = false
			names := report.SortedKeys(g.ByGroup)
			if key == "age" {
				names = sortAgeBands(names)
			}
			for _, n := range names {
				x := g.ByGroup[n]
				t.Add(label, key, n, strconv.Itoa(x.Users), fmt.Sprintf("%.4f", x.NDCG), ci(x.NDCGCI, "%.4f"),
					fmt.Sprintf("%.4f", x.ARP), ci(x.ARPCI, "%.4f"))
			}
			t.Add(label, key, "gap "+g.NDCGGap.Pair, "", fmt.Sprintf("%+.4f", g.NDCGGap.Gap), ci(g.NDCGGap.CI, "%+.4f"),
				fmt.Sprintf("%+.4f", g.ARPGap.Gap), ci(g.ARPGap.CI, "%+.4f"))
		}
	}
	t.Write(b)
}

// writeGroupCalibration prints each attribute's group-calibrated strengths and the NDCG@10
// gap between its two largest groups with no correction, the default and the calibrated
// strengths, with how much each narrows it and the paired bootstrap interval of that.
func (rep *QualityReport) writeGroupCalibration(b *strings.Builder) {
	if len(rep.GroupCalibration) == 0 {
		return
	}
	fmt.Fprintf(b, "\ngroup calibration (each group's strength: the largest costing it at most %g%% of its validation NDCG@10; "+
		"narrowed: |gap at alpha 0| - |gap|, paired bootstrap 95%% interval):\n", 100*eval.MaxGroupCost)
	t := report.NewTable("by", "strengths", "condition", ">NDCG@10", ">ARP", "gap", ">gap", "95% interval", ">narrowed", "95% interval")
	ci := func(c [2]float64) string { return fmt.Sprintf("[%+.4f, %+.4f]", c[0], c[1]) }
	for i, key := range report.SortedKeys(rep.GroupCalibration) {
		g := rep.GroupCalibration[key]
		if i > 0 {
			t.Gap()
		}
		var parts []string
		for _, n := range report.SortedKeys(g.Alpha) {
			parts = append(parts, fmt.Sprintf("%s %g", n, g.Alpha[n]))
		}
		strengths := strings.Join(parts, ", ") + " (" + g.Source + ")"
		if c := g.Calibrated; c != nil {
			t.Add(key, strengths, CondAlpha0, fmt.Sprintf("%.4f", g.NDCG[CondAlpha0]), fmt.Sprintf("%.4f", g.ARP[CondAlpha0]),
				c.Pair, fmt.Sprintf("%+.4f", c.Base), ci(c.BaseCI), "", "")
		}
		for _, cond := range []struct {
			name string
			c    *eval.GapChange
		}{{CondDefault, g.Default}, {CondCalibrated, g.Calibrated}} {
			if cond.c == nil {
				continue
			}
			t.Add(key, "", cond.name, fmt.Sprintf("%.4f", g.NDCG[cond.name]), fmt.Sprintf("%.4f", g.ARP[cond.name]),
				cond.c.Pair, fmt.Sprintf("%+.4f", cond.c.Treated), ci(cond.c.TreatedCI), fmt.Sprintf("%+.4f", cond.c.Narrowed), ci(cond.c.NarrowedCI))
		}
	}
	t.Write(b)
}

// frontierPanel plots the model's NDCG@10 against its ARP at each alpha (labelled), the
// baselines as single points.
func (rep *QualityReport) frontierPanel(model []QualityRow) (*plot.Plot, error) {
	p := report.NewPanel("accuracy against popularity over alpha", "ARP", "NDCG@10")
	p.Legend.Left = false // the model sits top left: little popularity, most accuracy
	xy := make(plotter.XYs, len(model))
	labels := make([]string, len(model))
	for i, r := range model {
		xy[i] = plotter.XY{X: r.ARP, Y: r.NDCG}
		labels[i] = "α " + fmtAlpha(r.Alpha)
		if *r.Alpha == rep.DefaultAlpha {
			labels[i] += " (default)"
		}
	}
	if err := report.AddLine(p, xy, "model", plotutil.Color(0), nil, 0); err != nil {
		return nil, err
	}
	l, err := plotter.NewLabels(plotter.XYLabels{XYs: xy, Labels: labels})
	if err != nil {
		return nil, fmt.Errorf("bench: plot: %w", err)
	}
	for i := range l.TextStyle {
		l.TextStyle[i].Font.Size = vg.Points(7)
		l.TextStyle[i].XAlign = draw.XLeft
	}
	l.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(2)}
	p.Add(l)
	series := 1
	for _, r := range rep.Rows {
		if r.Name == RowModel {
			continue
		}
		s, err := plotter.NewScatter(plotter.XYs{{X: r.ARP, Y: r.NDCG}})
		if err != nil {
			return nil, fmt.Errorf("bench: plot: %w", err)
		}
		s.Color = plotutil.Color(series)
		s.Shape = plotutil.Shape(series)
		p.Add(s)
		p.Legend.Add(r.Name, s)
		series++
	}
	dx, dy := p.X.Max-p.X.Min, p.Y.Max-p.Y.Min // room for the labels and the points on the edges
	p.X.Min, p.X.Max, p.Y.Min, p.Y.Max = p.X.Min-0.03*dx, p.X.Max+0.08*dx, p.Y.Min-0.05*dy, p.Y.Max+0.1*dy
	return p, nil
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
// baselines as flat dashed lines, and NDCG@10 against ARP over the strengths (the frontier of
// the popularity correction, the baselines as points), and returns its path.
func (rep *QualityReport) WritePlots(dir string) ([]string, error) {
	model := rep.modelRows()
	if len(model) == 0 {
		return nil, fmt.Errorf("bench: no model row to plot")
	}
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
		{"exposure", []metric{{"long-tail share", func(r QualityRow) (float64, bool) { return r.LongTailShare, true }},
			{"exposure Gini", func(r QualityRow) (float64, bool) { return r.ExposureGini, true }}}},
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
	frontier, err := rep.frontierPanel(model)
	if err != nil {
		return nil, err
	}
	plots = append(plots, frontier)
	path := filepath.Join(dir, QualityPlot)
	if err := report.SaveGrid(path, plots, 3); err != nil {
		return nil, err
	}
	return []string{path}, nil
}
