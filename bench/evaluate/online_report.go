package evaluate

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"github.com/llm4rec/llm4rec/bench/report"
	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
)

// WriteJSON writes the report as dir/online.json and returns its path.
func (rep *OnlineReport) WriteJSON(dir string) (string, error) {
	return report.WriteJSON(dir, OnlineJSON, rep)
}

func metMark(ok bool) string {
	if ok {
		return "met"
	}
	return "NOT met"
}

// WriteTable prints the report for people.
func (rep *OnlineReport) WriteTable(w io.Writer) error {
	var b strings.Builder
	r := rep.Engine
	fmt.Fprintf(&b, "online learning of %s (%s v%s) on %s, %s\n", rep.Bundle, rep.BundleName, rep.BundleVersion, rep.Data, rep.Provider)
	fmt.Fprintf(&b, "protocol: %s\n", rep.Protocol)
	fmt.Fprintf(&b, "data: %s\n\n", rep.DataNote)
	t := report.NewTable("measure", ">learning off", ">learning on", ">on - off")
	t.Add(fmt.Sprintf("prequential HR@10 (%d events)", r.Events), fmt.Sprintf("%.4f", r.HRWithout), fmt.Sprintf("%.4f", r.HRWith),
		fmt.Sprintf("%+.4f", r.Gain))
	t.Add("  hits", fmt.Sprint(r.HitsWithout), fmt.Sprint(r.HitsWith), fmt.Sprintf("%+d", r.HitsWith-r.HitsWithout))
	t.Add(fmt.Sprintf("earlier set HR@10 (%d users)", r.ValUsers), fmt.Sprintf("%.4f", r.ValBefore), fmt.Sprintf("%.4f", r.ValAfter),
		fmt.Sprintf("%+.4f", r.ValAfter-r.ValBefore))
	t.Write(&b)
	fmt.Fprintf(&b, "\ngain %+.4f (paired bootstrap 95%% CI %+.4f to %+.4f): target > 0 %s\n", r.Gain, r.GainCI95[0], r.GainCI95[1],
		metMark(rep.GainMet))
	fmt.Fprintf(&b, "forgetting %+.4f (earlier set before - after): target < %g %s\n", r.Forgetting, ForgettingTolerance,
		metMark(rep.ForgettingMet))
	fmt.Fprintf(&b, "largest |bias| after the replay %.3f; %s\n", r.MaxBias, rep.Agreement)
	if len(rep.Sweep) > 0 {
		b.WriteString("\nsweep (learner only; tune = replay of the validation interactions, earlier set = last training items; " +
			"test = the replay above):\n")
		t := report.NewTable(">rate", ">penalty", ">tune gain", "tune 95% CI", ">tune forget", ">test HR on", ">test gain", ">test forget", ">max |bias|", "")
		for _, p := range rep.Sweep {
			mark := ""
			if rep.Chosen != nil && p.LearnerSetting == rep.Chosen.LearnerSetting {
				mark = "chosen"
			}
			t.Add(fmt.Sprint(p.Rate), fmt.Sprint(p.Penalty), fmt.Sprintf("%+.4f", p.Tune.Gain),
				fmt.Sprintf("%+.4f..%+.4f", p.Tune.GainCI95[0], p.Tune.GainCI95[1]), fmt.Sprintf("%+.4f", p.Tune.Forgetting),
				fmt.Sprintf("%.4f", p.Test.HRWith), fmt.Sprintf("%+.4f", p.Test.Gain), fmt.Sprintf("%+.4f", p.Test.Forgetting),
				fmt.Sprintf("%.3f", p.Test.MaxBias), mark)
		}
		t.Write(&b)
		if rep.Chosen != nil {
			c := rep.Chosen
			fmt.Fprintf(&b, "chosen on the tuning replay: rate %g, penalty %g -> test gain %+.4f, forgetting %+.4f\n",
				c.Rate, c.Penalty, c.Test.Gain, c.Test.Forgetting)
		} else {
			b.WriteString("no setting's tuning gain is above noise (95% CI above 0) with tuning forgetting below the tolerance: " +
				"nothing to choose over the server's defaults\n")
		}
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "took %.1fs (load %.1fs, replay %.1fs)\n", rep.Timings["total"], rep.Timings["load"], rep.Timings["replay"])
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePlots draws dir/online.png: the cumulative prequential hits with and without learning
// over the replay, and returns its path.
func (rep *OnlineReport) WritePlots(dir string) ([]string, error) {
	if len(rep.CurveWith) == 0 {
		return nil, fmt.Errorf("bench: no replay to plot")
	}
	p := report.NewPanel("prequential hits@10 over the replay", "events replayed (time order)", "cumulative hits")
	for i, c := range []struct {
		name string
		v    []int
	}{{"learning off", rep.CurveWithout}, {"learning on", rep.CurveWith}} {
		xy := make(plotter.XYs, len(c.v))
		for j, v := range c.v {
			xy[j] = plotter.XY{X: float64(j + 1), Y: float64(v)}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("bench: plot: %w", err)
		}
		l.Color = plotutil.Color(i)
		p.Add(l)
		p.Legend.Add(c.name, l)
	}
	panels := []*plot.Plot{p}
	if len(rep.Sweep) > 0 {
		q := report.NewPanel("sweep: test gain against forgetting", "forgetting (earlier-set HR@10 drop)", "prequential HR@10 gain")
		var xy plotter.XYs
		for _, s := range rep.Sweep {
			xy = append(xy, plotter.XY{X: s.Test.Forgetting, Y: s.Test.Gain})
		}
		sc, err := plotter.NewScatter(xy)
		if err != nil {
			return nil, fmt.Errorf("bench: plot: %w", err)
		}
		q.Add(sc)
		panels = append(panels, q)
	}
	path := filepath.Join(dir, OnlinePlot)
	if err := report.SaveGrid(path, panels, 2); err != nil {
		return nil, err
	}
	return []string{path}, nil
}
