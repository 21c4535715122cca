package evaluate

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/eval"
)

func TestParseFloatsAndBands(t *testing.T) {
	if got, err := ParseFloats("0, 0.5,1"); err != nil || !slices.Equal(got, []float64{0, 0.5, 1}) {
		t.Errorf("ParseFloats = %v, %v", got, err)
	}
	for _, bad := range []string{"", "x", "-1", "11", "NaN"} {
		if _, err := ParseFloats(bad); err == nil {
			t.Errorf("ParseFloats(%q) accepted", bad)
		}
	}
	if got := sortAgeBands([]string{"45+", "25-34", "<25", "35-44"}); !slices.Equal(got, []string{"<25", "25-34", "35-44", "45+"}) {
		t.Errorf("bands %v", got)
	}
	if got := QualityAlphas(nil, 0.25); !slices.Equal(got, []float64{0, 0.1, 0.2, 0.25, 0.3, 0.5, 1}) {
		t.Errorf("default alphas with the bundle's 0.25: %v", got)
	}
	if got := QualityAlphas(nil, 0.3); !slices.Equal(got, []float64{0, 0.1, 0.2, 0.3, 0.5, 1}) {
		t.Errorf("default alphas with the bundle's 0.3: %v", got)
	}
	if got := QualityAlphas([]float64{1, 0.5, 1}, 0.3); !slices.Equal(got, []float64{0, 0.5, 1}) {
		t.Errorf("given alphas: %v", got)
	}
}

// The report prints, encodes and plots without an engine.
func TestQualityReportOutputs(t *testing.T) {
	a0, a1, gap := 0.0, 1.0, 0.01
	m := eval.Metrics{Users: 3, HR: 0.5, NDCG: 0.25, Coverage: 0.1, ILD: 0.7, ARP: 0.2, LongTailShare: 0.3, ExposureGini: 0.8,
		NDCGByGender: map[string]float64{"F": 0.3, "M": 0.2}, GenderGap: &gap, GenderGapPair: "F-M"}
	m1 := m
	m1.NDCG, m1.ARP, m1.LongTailShare, m1.ExposureGini = 0.24, 0.15, 0.4, 0.7
	nd, arp := []float64{0.3, 0.2, 0.25, 0.1}, []float64{0.2, 0.1, 0.3, 0.2}
	groups := map[string]*eval.GroupReport{"gender": eval.GroupIntervals(nd, arp, []string{"F", "M", "F", "M"}, eval.GroupSeed, 100),
		"age": eval.GroupIntervals(nd, arp, []string{"45+", "<25", "<25", "45+"}, eval.GroupSeed, 100)}
	rep := &QualityReport{Run: report.Run{Kind: "quality"}, Bundle: "b", Rows: []QualityRow{{Name: RowModel, Alpha: &a1, Metrics: m1},
		{Name: RowModel, Alpha: &a0, Metrics: m}, {Name: RowMostPopular, Metrics: m}},
		Export: map[string]eval.Metrics{RowModel: m, RowModelIPS: m1}, ExportSource: "report.json", DefaultAlpha: 1,
		Groups: map[string]map[string]*eval.GroupReport{GroupsAlpha0: groups, GroupsDefault: groups}, Timings: map[string]float64{}}
	rep.compare()
	rep.sweep()
	if rep.NDCGDiff == nil || *rep.NDCGDiff != 0 || !*rep.NDCGMet || len(rep.Compare) != 12 {
		t.Fatalf("compare: %+v", rep.Compare)
	}
	if rep.IPSNDCGDiff == nil || *rep.IPSNDCGDiff != 0 || !*rep.IPSNDCGMet || rep.Compare[6].Row != RowModelIPS || rep.Compare[7].Go != 0.24 {
		t.Fatalf("compare at the default alpha: %v %+v", rep.IPSNDCGDiff, rep.Compare)
	}
	if len(rep.IPSSweep) != 2 || rep.IPSSweep[0] != (SweepPoint{0, 0.25, 0.2, 0.1, 0.3, 0.8}) || rep.IPSSweep[1].Alpha != 1 {
		t.Fatalf("sweep %+v", rep.IPSSweep)
	}
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"most_popular", "NDCG@10 by group", "against the export", ", met", "popularity correction",
		"1*", "-4.0%", "-25.0%", "by user group", "gap F-M", "gap 45+-<25", "1 (default)", "model_ips", "target at the default alpha 1"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
	dir := t.TempDir()
	if _, err := rep.WriteJSON(dir); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, QualityJSON))
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil || back["rows"].([]any)[0].(map[string]any)["ndcg@10"] != 0.24 {
		t.Errorf("JSON: %v %s", err, raw)
	}
	checkQualityJSON(t, raw, 2)

	// an export without figures at the default alpha (older bundles): a note, no failure
	rep.Compare, rep.IPSNDCGDiff, rep.IPSNDCGMet, rep.Notes = nil, nil, nil, nil
	delete(rep.Export, RowModelIPS)
	rep.compare()
	if rep.IPSNDCGDiff != nil || len(rep.Compare) != 6 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "model_ips") {
		t.Errorf("without model_ips: %v %+v", rep.Notes, rep.Compare)
	}
	paths, err := rep.WritePlots(dir)
	if err != nil || len(paths) != 1 {
		t.Fatalf("plots %v %v", paths, err)
	}
	if st, err := os.Stat(paths[0]); err != nil || st.Size() == 0 {
		t.Errorf("plot %v", err)
	}
}

// checkQualityJSON holds quality.json to its popularity-correction and group sections: points
// sweep points with every figure, default_alpha among them, groups at alpha 0 with intervals.
func checkQualityJSON(t *testing.T, raw []byte, points int) {
	t.Helper()
	var back struct {
		Sweep        []map[string]float64                 `json:"ips_sweep"`
		DefaultAlpha *float64                             `json:"default_alpha"`
		Groups       map[string]map[string]map[string]any `json:"groups"`
		Rows         []map[string]any                     `json:"rows"`
	}
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatalf("quality.json: %v", err)
	}
	if len(back.Sweep) != points || back.DefaultAlpha == nil {
		t.Fatalf("quality.json: %d sweep points (want %d), default_alpha %v", len(back.Sweep), points, back.DefaultAlpha)
	}
	found := false
	for _, p := range back.Sweep {
		for _, k := range []string{"alpha", "ndcg@10", "arp", "coverage@10", "long_tail_share", "exposure_gini"} {
			if _, ok := p[k]; !ok {
				t.Errorf("sweep point %v lacks %s", p, k)
			}
		}
		found = found || p["alpha"] == *back.DefaultAlpha
	}
	if !found {
		t.Errorf("default alpha %g not in the sweep", *back.DefaultAlpha)
	}
	for _, setting := range []string{GroupsAlpha0, GroupsDefault} {
		g := back.Groups[setting]["gender"]
		if g == nil || g["by_group"] == nil || g["ndcg@10_gap"].(map[string]any)["ci95"] == nil || g["arp_gap"] == nil {
			t.Errorf("quality.json groups at %s: %v", setting, back.Groups[setting])
		}
	}
	for _, k := range []string{"long_tail_share", "exposure_gini"} {
		if _, ok := back.Rows[0][k]; !ok {
			t.Errorf("rows lack %s", k)
		}
	}
}

// testData is the MovieLens-100K folder of the bundle tests: $LLM4REC_DATA (default
// <repo>/../shared/data)/ml-100k. The test skips, saying what is missing, when it is absent.
func testData(t *testing.T) string {
	root := os.Getenv("LLM4REC_DATA")
	if root == "" {
		root = filepath.Join("..", "..", "..", "shared", "data")
	}
	dir := filepath.Join(root, "ml-100k")
	_, errML := os.Stat(filepath.Join(dir, "u.data"))
	if _, err := os.Stat(filepath.Join(dir, "interactions.csv")); err != nil && errML != nil {
		t.Skipf("no MovieLens-100K data at %s (set LLM4REC_DATA to the folder holding ml-100k/)", dir)
	}
	return dir
}

// evalBundle is the bundle of the evaluation tests: $LLM4REC_TEST_BUNDLE, else the default
// bundle. The test skips, saying what is missing, when it is absent.
func evalBundle(t *testing.T) string {
	dir := os.Getenv("LLM4REC_TEST_BUNDLE")
	if dir == "" {
		dir = filepath.Join("..", "..", "models", "movielens-100k", "1")
	}
	if err := report.BundleReady(dir); err != nil {
		t.Skipf("no model bundle, evaluation not run: %v", err)
	}
	return dir
}

// engineQuality is the whole evaluation through the engine on the test bundle (CPU) at the
// default alphas, run once for the tests that read it.
var engineQuality = sync.OnceValues(func() (*QualityReport, error) {
	return RunQuality(context.Background(), QualityConfig{Bundle: qualityBundle, Data: qualityData,
		Runtime: ort.Options{Provider: ort.ProviderCPU}, NoSteering: true, ExplainUsers: -1, NoGroupCalibration: true})
})

var qualityBundle, qualityData string

// runEngineQuality is engineQuality on the test bundle and data (the test skips without them).
func runEngineQuality(t *testing.T) *QualityReport {
	t.Helper()
	qualityBundle, qualityData = evalBundle(t), testData(t)
	rep, err := engineQuality()
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// TestQualityMatchesExport holds the evaluation through the engine to the export's report:
// NDCG@10 of the model within NDCGTolerance, the baselines within the same bound, and at the
// bundle's default alpha the same bound when the report has the export's figures there.
func TestQualityMatchesExport(t *testing.T) {
	rep := runEngineQuality(t)
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sb.String())
	if !rep.DataMatches {
		t.Skipf("the data is not the bundle's training data (%s): nothing to compare", rep.DataNote)
	}
	if rep.NDCGDiff == nil {
		t.Fatalf("no comparison with the export: %v", rep.Notes)
	}
	if !*rep.NDCGMet {
		t.Errorf("NDCG@10 differs from the export's by %+.5f (tolerance %g)", *rep.NDCGDiff, NDCGTolerance)
	}
	for _, c := range rep.Compare {
		if c.Row != RowModel && (c.Metric == "ndcg@10" || c.Metric == "hr@10") && math.Abs(c.Diff) > NDCGTolerance {
			t.Errorf("%s %s: go %.5f, export %.5f", c.Row, c.Metric, c.Go, c.Export)
		}
	}
	if len(rep.Rows) != len(rep.IPSSweep)+2 || rep.Row(RowModel, 0).Users != rep.Export[RowModel].Users {
		t.Errorf("rows %+v", rep.Rows)
	}
	if _, ok := rep.Export[RowModelIPS]; !ok {
		t.Logf("the export has no figures at the default alpha (metrics.model_ips.exported): not compared")
		return
	}
	if rep.IPSNDCGDiff == nil {
		t.Fatalf("no comparison at the default alpha %g: %v", rep.DefaultAlpha, rep.Notes)
	}
	if !*rep.IPSNDCGMet {
		t.Errorf("at the default alpha %g NDCG@10 differs from the export's by %+.5f (tolerance %g)", rep.DefaultAlpha, *rep.IPSNDCGDiff,
			NDCGTolerance)
	}
}

// TestQualitySweep holds the popularity correction through the engine to what it is for: one
// point per alpha, less popular and more long-tail lists at the largest alpha than at 0,
// group figures with intervals at 0 and at the default alpha, all of it in quality.json.
func TestQualitySweep(t *testing.T) {
	rep := runEngineQuality(t)
	alphas := QualityAlphas(nil, rep.DefaultAlpha)
	if rep.DefaultAlpha < 0 || len(rep.IPSSweep) != len(alphas) {
		t.Fatalf("default alpha %g, sweep %+v; want one point per alpha of %v", rep.DefaultAlpha, rep.IPSSweep, alphas)
	}
	for i, p := range rep.IPSSweep {
		r := rep.Row(RowModel, p.Alpha)
		if p.Alpha != alphas[i] || r == nil || r.NDCG != p.NDCG || r.ARP != p.ARP || r.LongTailShare != p.LongTailShare {
			t.Errorf("point %d %+v, want alpha %g and its row %+v", i, p, alphas[i], r)
		}
		if p.LongTailShare <= 0 || p.LongTailShare >= 1 || p.ExposureGini <= 0 || p.ExposureGini >= 1 {
			t.Errorf("alpha %g: long-tail share %v, exposure Gini %v outside (0, 1)", p.Alpha, p.LongTailShare, p.ExposureGini)
		}
	}
	first, last := rep.IPSSweep[0], rep.IPSSweep[len(rep.IPSSweep)-1]
	if first.Alpha != 0 || last.ARP >= first.ARP || last.LongTailShare <= first.LongTailShare {
		t.Errorf("alpha %g against 0: ARP %v vs %v, long-tail share %v vs %v", last.Alpha, last.ARP, first.ARP, last.LongTailShare,
			first.LongTailShare)
	}
	for _, setting := range []string{GroupsAlpha0, GroupsDefault} {
		for _, key := range []string{"gender", "age"} {
			g := rep.Groups[setting][key]
			if g == nil {
				t.Errorf("no %s groups at %s", key, setting)
				continue
			}
			users := 0
			for name, x := range g.ByGroup {
				users += x.Users
				if !(x.NDCGCI[0] <= x.NDCG && x.NDCG <= x.NDCGCI[1] && x.ARPCI[0] <= x.ARP && x.ARP <= x.ARPCI[1]) {
					t.Errorf("%s %s %s: %+v", setting, key, name, x)
				}
			}
			if gp := g.NDCGGap; users == 0 || users > rep.Row(RowModel, 0).Users || !(gp.CI[0] <= gp.Gap && gp.Gap <= gp.CI[1]) {
				t.Errorf("%s %s: %d users, gap %+v", setting, key, users, gp)
			}
		}
	}
	dir := t.TempDir()
	if _, err := rep.WriteJSON(dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, QualityJSON))
	if err != nil {
		t.Fatal(err)
	}
	checkQualityJSON(t, raw, len(alphas))
	if paths, err := rep.WritePlots(dir); err != nil || len(paths) != 1 {
		t.Errorf("plots %v %v", paths, err)
	}
}
