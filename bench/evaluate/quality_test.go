package evaluate

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
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
}

// The report prints, encodes and plots without an engine.
func TestQualityReportOutputs(t *testing.T) {
	a0, a1, gap := 0.0, 1.0, 0.01
	m := eval.Metrics{Users: 3, HR: 0.5, NDCG: 0.25, Coverage: 0.1, ILD: 0.7, ARP: 0.2, NDCGByGender: map[string]float64{"F": 0.3, "M": 0.2},
		GenderGap: &gap, GenderGapPair: "F-M"}
	rep := &QualityReport{Run: report.Run{Kind: "quality"}, Bundle: "b", Rows: []QualityRow{{Name: RowModel, Alpha: &a0, Metrics: m},
		{Name: RowModel, Alpha: &a1, Metrics: m}, {Name: RowMostPopular, Metrics: m}}, Export: map[string]eval.Metrics{RowModel: m},
		ExportSource: "report.json", Timings: map[string]float64{}}
	rep.compare()
	if rep.NDCGDiff == nil || *rep.NDCGDiff != 0 || !*rep.NDCGMet || len(rep.Compare) != 6 {
		t.Fatalf("compare: %+v", rep.Compare)
	}
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"most_popular", "NDCG@10 by group", "against the export", ", met"} {
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
	if err := json.Unmarshal(raw, &back); err != nil || back["rows"].([]any)[0].(map[string]any)["ndcg@10"] != 0.25 {
		t.Errorf("JSON: %v %s", err, raw)
	}
	paths, err := rep.WritePlots(dir)
	if err != nil || len(paths) != 1 {
		t.Fatalf("plots %v %v", paths, err)
	}
	if st, err := os.Stat(paths[0]); err != nil || st.Size() == 0 {
		t.Errorf("plot %v", err)
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

// TestQualityMatchesExport runs the whole evaluation through the engine on the test bundle
// (CPU) and holds it to the export's report: NDCG@10 of the model within NDCGTolerance, the
// baselines within the same bound.
func TestQualityMatchesExport(t *testing.T) {
	dir := evalBundle(t)
	data := testData(t)
	rep, err := RunQuality(context.Background(), QualityConfig{Bundle: dir, Data: data, Alphas: []float64{0},
		Runtime: ort.Options{Provider: ort.ProviderCPU}})
	if err != nil {
		t.Fatal(err)
	}
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
	if len(rep.Rows) != 3 || rep.Row(RowModel, 0).Users != rep.Export[RowModel].Users {
		t.Errorf("rows %+v", rep.Rows)
	}
}
