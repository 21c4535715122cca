package scale

import (
	"fmt"
	"io"
	"path/filepath"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/llm4rec/llm4rec/bench/report"
)

// WriteTable prints the report for people: one table of each bundle's load and memory, one of
// every point.
func (r *Report) WriteTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "bench scale: %s, %d CPUs (%s), provider %s, %s a point, history %d, k %d\n\n", r.Started,
		r.Host.CPUs, r.Host.CPUModel, r.Provider, r.Duration, r.HistoryLen, r.K)
	t := report.NewTable("bundle", ">items", ">on disk MB", ">validate s", ">load s", ">RSS after load MB", ">load adds MB", ">Go heap MB", ">peak RSS MB", "index", ">recall@10", "steering")
	for _, x := range r.Bundles {
		if x.Error != "" {
			t.Add(x.Name, fmt.Sprint(x.Items), "error: "+report.OneLine(x.Error, 200))
			continue
		}
		recall := "-"
		if x.Recall10 != nil {
			recall = fmt.Sprintf("%.3f", *x.Recall10)
		}
		t.Add(x.Name, fmt.Sprint(x.Items), fmt.Sprintf("%.0f", float64(x.BundleBytes)/(1<<20)), fmt.Sprintf("%.2f", x.ValidateSeconds),
			fmt.Sprintf("%.2f", x.LoadSeconds), fmt.Sprintf("%.0f", x.RSSAfterMB), fmt.Sprintf("%.0f", x.LoadRSSMB),
			fmt.Sprintf("%.0f", x.GoHeapMB), fmt.Sprintf("%.0f", x.PeakRSSMB), x.Index, recall, steeringPath(x.SteeringRank))
	}
	t.Write(&b)
	b.WriteString("\nRecommend (closed loop, in process; stages: mean ms of encode / retrieve / fusion / generate / rank)\n\n")
	t = report.NewTable("bundle", ">items", "kind", ">callers", ">calls", ">req/s", ">p50 ms", ">p99 ms", ">p50 vs smallest", "stages ms", ">errors")
	var first *Bundle
	for i := range r.Bundles {
		if r.Bundles[i].Error == "" {
			first = &r.Bundles[i]
			break
		}
	}
	for _, x := range r.Bundles {
		for _, p := range x.Points {
			ratio := ""
			if first != nil {
				if base := first.point(p.Kind, p.Callers); base != nil && base.Latency.P50 > 0 {
					ratio = fmt.Sprintf("%.2fx", p.Latency.P50/base.Latency.P50)
				}
			}
			s := p.Stages
			stages := fmt.Sprintf("%.2f / %.2f / %.2f / %.2f / %.2f", s.Encode, s.Retrieve, s.Fusion, s.Generate, s.Rank)
			errs := fmt.Sprint(p.Errors)
			if p.FirstError != "" {
				errs += " (" + report.OneLine(p.FirstError, 80) + ")"
			}
			t.Add(x.Name, fmt.Sprint(x.Items), string(p.Kind), fmt.Sprint(p.Callers), fmt.Sprint(p.Calls), report.FmtRate(p.PerSec),
				report.FmtMs(p.Latency.P50), report.FmtMs(p.Latency.P99), ratio, stages, errs)
		}
	}
	t.Write(&b)
	if len(r.P50Ratio) > 0 {
		b.WriteString("\np50 at one caller, largest catalog over smallest:")
		for _, k := range AllKinds {
			if v, ok := r.P50Ratio[k]; ok {
				fmt.Fprintf(&b, " %s %.2fx", k, v)
			}
		}
		b.WriteString("\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes scale.json into dir.
func (r *Report) WriteJSON(dir string) (string, error) { return report.WriteJSON(dir, "scale.json", r) }

// WritePlots draws scale.png into dir: Recommend p50 and p99 against catalog size (one line per
// kind and number of callers; both axes logarithmic), load time and resident memory against
// catalog size.
func (r *Report) WritePlots(dir string) ([]string, error) {
	var ok []Bundle
	for _, b := range r.Bundles {
		if b.Error == "" {
			ok = append(ok, b)
		}
	}
	if len(ok) == 0 {
		return nil, fmt.Errorf("bench scale: no bundle measured, nothing to plot")
	}
	type series struct {
		kind    Kind
		callers int
	}
	var keys []series
	for _, p := range ok[0].Points {
		keys = append(keys, series{p.Kind, p.Callers})
	}
	lat := report.NewPanel("Recommend latency (solid p50, dashed p99)", "catalog items", "ms")
	for i, k := range keys {
		var p50, p99 plotter.XYs
		for _, b := range ok {
			if p := b.point(k.kind, k.callers); p != nil && p.Calls > 0 {
				p50 = append(p50, plotter.XY{X: float64(b.Items), Y: p.Latency.P50})
				p99 = append(p99, plotter.XY{X: float64(b.Items), Y: p.Latency.P99})
			}
		}
		if len(p50) == 0 {
			continue
		}
		c := plotutil.Color(i)
		name := fmt.Sprintf("%s x%d", k.kind, k.callers)
		if err := report.AddLine(lat, p50, name+" p50", c, nil, i); err != nil {
			return nil, err
		}
		if err := report.AddLine(lat, p99, name+" p99", c, []vg.Length{vg.Points(4), vg.Points(3)}, i); err != nil {
			return nil, err
		}
	}
	load := report.NewPanel("Bundle load", "catalog items", "seconds")
	mem := report.NewPanel("Resident memory", "catalog items", "MB")
	var ls, rss, added plotter.XYs
	for _, b := range ok {
		ls = append(ls, plotter.XY{X: float64(b.Items), Y: b.LoadSeconds})
		rss = append(rss, plotter.XY{X: float64(b.Items), Y: b.RSSAfterMB})
		added = append(added, plotter.XY{X: float64(b.Items), Y: b.LoadRSSMB})
	}
	if err := report.AddLine(load, ls, "recommend.Open", plotutil.Color(0), nil, 0); err != nil {
		return nil, err
	}
	if err := report.AddLine(mem, rss, "after load", plotutil.Color(0), nil, 0); err != nil {
		return nil, err
	}
	if err := report.AddLine(mem, added, "added by the load", plotutil.Color(1), nil, 1); err != nil {
		return nil, err
	}
	for _, p := range []*plot.Plot{lat, load, mem} {
		p.X.Scale, p.X.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	}
	lat.Y.Scale, lat.Y.Tick.Marker = plot.LogScale{}, plot.LogTicks{Prec: -1}
	path := filepath.Join(dir, "scale.png")
	if err := report.SaveGrid(path, []*plot.Plot{lat, load, mem}, 3); err != nil {
		return nil, err
	}
	return []string{path}, nil
}

// steeringPath names how a query's steering terms are taken: in the map's rank or the full
// product.
func steeringPath(rank int) string {
	if rank == 0 {
		return "full"
	}
	return fmt.Sprintf("rank %d", rank)
}
