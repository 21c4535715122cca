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
	s := rep.Stream
	fmt.Fprintf(&b, "online learning of %s (%s v%s) on %s, %s\n", rep.Bundle, rep.BundleName, rep.BundleVersion, rep.Data, rep.Provider)
	fmt.Fprintf(&b, "protocol: %s\n", rep.Protocol)
	fmt.Fprintf(&b, "stream: %d events of %d users (%d new after the cutoff, %d events); %d cold items (no interaction "+
		"before the cutoff, %d events); %d events on items outside the catalog (misses); %d history mismatches\n\n",
		s.Events, s.Users, s.NewUsers, s.NewUserEvents, s.ColdItems, s.ColdItemEvents, s.NotInCatalog, s.HistoryMismatches)
	if s.Tune > 0 {
		fmt.Fprintf(&b, "tuning period: the %d events before %d (settings chosen there); evaluated: the %d events from it on\n\n",
			s.Events-s.Evaluated, s.Tune, s.Evaluated)
	}
	t := report.NewTable("mode", ">HR@10", ">NDCG@10", ">hits", ">tuning HR@10", ">tuning NDCG@10")
	for _, md := range OnlineModes {
		if r, ok := rep.Modes[md]; ok {
			tr, tn := "", ""
			if tm, ok := rep.TuneModes[md]; ok {
				tr, tn = fmt.Sprintf("%.4f", tm.HR), fmt.Sprintf("%.4f", tm.NDCG)
			}
			t.Add(md, fmt.Sprintf("%.4f", r.HR), fmt.Sprintf("%.4f", r.NDCG), fmt.Sprint(r.Hits), tr, tn)
		}
	}
	t.Write(&b)
	b.WriteString("\npaired NDCG@10 differences (bootstrap 95% interval over events):\n")
	for _, k := range report.SortedKeys(rep.Differences) {
		d := rep.Differences[k]
		fmt.Fprintf(&b, "  %-22s %+.4f  [%+.4f, %+.4f]\n", k, d.NDCG, d.CI95[0], d.CI95[1])
	}
	if rep.GapClosed != nil {
		fmt.Fprintf(&b, "gap closed by the learner (online - live_state) / (retrained - live_state): %.2f [%.2f, %.2f]: target >= %g %s\n",
			*rep.GapClosed, rep.GapClosedCI95[0], rep.GapClosedCI95[1], GapTarget, metMark(rep.Targets.GapClosed))
	} else if rep.Targets.RetrainedIncluded {
		b.WriteString("gap closed: retrained is not above live_state, no gap to close\n")
	} else {
		b.WriteString("gap closed: no retrained checkpoints given\n")
	}
	fmt.Fprintf(&b, "online above live_state (interval above 0): %s\n", metMark(rep.Targets.OnlineAboveLive))
	for _, c := range rep.Checkpoints {
		fmt.Fprintf(&b, "  checkpoint from %d (%s): %d events, NDCG@10", c.From, c.Bundle, c.Events)
		for _, md := range OnlineModes {
			if v, ok := c.NDCG[md]; ok {
				fmt.Fprintf(&b, " %s %.4f", md, v)
			}
		}
		b.WriteString("\n")
	}
	f := rep.ForgettingDetail
	fmt.Fprintf(&b, "forgetting: validation NDCG@10 of %d pre-cutoff users %.4f -> %.4f, relative drop %+.4f (drop interval "+
		"[%+.4f, %+.4f]): target < %g %s\n", f.Users, f.Before, f.After, f.Relative, f.CI95[0], f.CI95[1],
		ForgettingTolerance, metMark(rep.Targets.Forgetting))
	fmt.Fprintf(&b, "effect latency (acknowledged -> learned) p50 %.2f ms, p99 %.2f ms: target < %g ms %s\n",
		rep.EffectLatencyP50Ms, rep.EffectLatencyP99Ms, EffectLatencyTarget, metMark(rep.Targets.EffectLatency))
	l := rep.Learner
	fmt.Fprintf(&b, "learner: state dim %d, %d updates, update %.3f ms + inputs %.3f ms per event; within its CPU share %.2f "+
		"it follows up to %.0f events/s; max |b| %.3f, max |u| %.3f, trend weight %.3f\n", l.Dim, l.Updates, l.UpdateMs, l.InputsMs, l.CPUShare,
		l.MaxEventsPerS, l.MaxBias, l.MaxResidual, l.TrendWeight)
	if len(rep.Sweep) > 0 {
		b.WriteString("\nsweep of learner settings (tuning period, or the whole stream without one; forgetting at its end):\n")
		t := report.NewTable(">rate", ">residual rate", ">trend rate", ">penalty", ">replay", ">replay steps", ">NDCG@10", ">over live_state",
			"95% interval", ">forgetting", "")
		for _, p := range rep.Sweep {
			mark := ""
			if p.Chosen {
				mark = "chosen"
			}
			c := p.Config
			t.Add(fmt.Sprint(c.Rate), fmt.Sprint(c.ResidualRate), fmt.Sprint(c.TrendRate), fmt.Sprint(c.Penalty), fmt.Sprint(c.Replay), fmt.Sprint(c.ReplaySteps),
				fmt.Sprintf("%.4f", p.Mode.NDCG), fmt.Sprintf("%+.4f", p.OverLive.NDCG),
				fmt.Sprintf("%+.4f..%+.4f", p.OverLive.CI95[0], p.OverLive.CI95[1]), fmt.Sprintf("%+.4f", p.Forgetting), mark)
		}
		t.Write(&b)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	fmt.Fprintf(&b, "took %.1fs (load %.1fs, graphs %.1fs, stream %.1fs)\n", rep.Timings["total"], rep.Timings["load"],
		rep.Timings["graphs"], rep.Timings["stream"])
	_, err := io.WriteString(w, b.String())
	return err
}

// WritePlots draws dir/online.png: each mode's rolling NDCG@10 over the stream, and returns
// its path.
func (rep *OnlineReport) WritePlots(dir string) ([]string, error) {
	if len(rep.RollingX) == 0 {
		return nil, fmt.Errorf("bench: no stream to plot")
	}
	p := report.NewPanel(fmt.Sprintf("rolling NDCG@10 over the stream (%d events)", rep.Window),
		"events streamed (time order)", "NDCG@10")
	for i, md := range OnlineModes {
		v, ok := rep.Rolling[md]
		if !ok {
			continue
		}
		xy := make(plotter.XYs, len(v))
		for j, y := range v {
			xy[j] = plotter.XY{X: float64(rep.RollingX[j]), Y: y}
		}
		l, err := plotter.NewLine(xy)
		if err != nil {
			return nil, fmt.Errorf("bench: plot: %w", err)
		}
		l.Color = plotutil.Color(i)
		l.Dashes = plotutil.Dashes(i)
		p.Add(l)
		p.Legend.Add(md, l)
	}
	path := filepath.Join(dir, OnlinePlot)
	if err := report.SaveGrid(path, []*plot.Plot{p}, 1); err != nil {
		return nil, err
	}
	return []string{path}, nil
}
