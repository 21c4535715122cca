package evaluate

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
)

// The section reads the export's figures, encodes under the export's names and prints.
func TestSteeringReportOutputs(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"report.json": `{"steering": {"categories": ["Drama", "Comedy"], "users": 50, "history": 20,
		"template": "recommend me a {c} {noun}", "voice": null, "by_category": {"Drama": {"phrase": "recommend me a drama movie",
		"none": 0.4, "typed": 0.7, "typed_no_history": 0.9}}, "precision@10_none": 0.3, "precision@10_typed": 0.6,
		"precision@10_typed_no_history": 0.8, "ndcg@10_with_category_query": 0.12, "ndcg@10_history_only": 0.08}}`})
	e := exportSteering(dir)
	if e == nil || e.Users != 50 || e.Voice != "" || e.PrecisionSpoken != nil || !near(*e.NDCGRatio, 1.5) || e.ByCategory["Drama"].Typed != 0.7 {
		t.Fatalf("export figures %+v", e)
	}
	if exportSteering(t.TempDir()) != nil {
		t.Error("figures without a report.json")
	}
	p, q, r := 0.5, 0.1, 0.05
	rep := &SteeringReport{NDCGUsers: 9, Export: e, Notes: []string{"a note"}}
	rep.Categories, rep.Users, rep.History, rep.Template = []string{"Drama"}, 8, 20, "{c}"
	rep.ByCategory = map[string]CategorySteering{"Drama": {Phrase: "drama", None: 0.25, Typed: 0.5, Spoken: &p, TypedNoHistory: 0.75}}
	rep.PrecisionNone, rep.PrecisionTyped, rep.PrecisionSpoken, rep.PrecisionTypedNoHistory = &p, &p, &p, &p
	rep.NDCGWithQuery, rep.NDCGHistoryOnly, rep.NDCGRatio = &q, &r, ratio(q, r)
	raw, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"categories", "users", "history", "template", "by_category", "precision@10_none", "precision@10_typed",
		"precision@10_spoken", "precision@10_typed_no_history", "ndcg@10_with_category_query", "ndcg@10_history_only", "ndcg_ratio", "export"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, raw)
		}
	}
	var b strings.Builder
	rep.writeTable(&b)
	for _, want := range []string{"typed, no history", "0.7500", "export (50 users)", "ratio", "2.0000", "note: a note"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
}

// RunSteering through the engine on the test bundle, kept small (2 categories, 8 users,
// query-conditioned NDCG on the first 60 users): every figure is a share, typed requests move
// the lists towards the category, spoken ones are measured when espeak-ng is installed.
func TestRunSteeringOnBundle(t *testing.T) {
	dir := evalBundle(t)
	data := testData(t)
	env, err := openEnv(dir, data, ort.Options{Provider: ort.ProviderCPU}, recommend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	m := env.Engine.Manifest()
	// Bundles exported before the steering evaluation have no steering section (the committed
	// bundle until it is re-exported): nothing to repeat.
	if m.Steering == nil {
		t.Skipf("the bundle %s has no steering section in its manifest (exported before the steering evaluation); re-export it to run this test", dir)
	}
	spec := *m.Steering
	if len(spec.Categories) < 2 {
		t.Skipf("the steering section names %d categories", len(spec.Categories))
	}
	spec.Categories, spec.Users = spec.Categories[:2], 8
	users := env.Users[:min(60, len(env.Users))]
	rep, err := RunSteering(context.Background(), env.Engine, users, &spec, 8, SteeringSeed)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.writeTable(&b)
	t.Logf("\n%s", b.String())
	if rep.Users != 8 || len(rep.ByCategory) != 2 || rep.PrecisionTyped == nil || rep.NDCGWithQuery == nil || rep.NDCGUsers == 0 {
		t.Fatalf("report %+v", rep)
	}
	for c, r := range rep.ByCategory {
		for _, v := range []float64{r.None, r.Typed, r.TypedNoHistory} {
			if v < 0 || v > 1 {
				t.Errorf("%s: precision %v outside [0, 1]", c, v)
			}
		}
		if r.Phrase != spec.Phrase([]string{c}) {
			t.Errorf("%s: phrase %q", c, r.Phrase)
		}
	}
	if *rep.PrecisionTyped <= *rep.PrecisionNone {
		t.Errorf("typed requests did not steer: precision@10 typed %.4f, none %.4f", *rep.PrecisionTyped, *rep.PrecisionNone)
	}
	_, lookErr := exec.LookPath("espeak-ng")
	if (lookErr == nil) != (rep.PrecisionSpoken != nil) {
		t.Errorf("espeak-ng found: %v, spoken measured: %v (notes %v)", lookErr == nil, rep.PrecisionSpoken != nil, rep.Notes)
	}
}

func near(a, b float64) bool { return math.Abs(a-b) < 1e-9 }

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
