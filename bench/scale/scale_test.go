package scale

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// needPython is the export virtualenv's interpreter; without one the test cannot synthesize
// a catalog and says so (a failure under LLM4REC_REQUIRE_BUNDLE=1, as the bundle tests).
func needPython(t *testing.T) string {
	t.Helper()
	py := Config{}.withDefaults().Python
	if _, err := os.Stat(py); err != nil {
		if os.Getenv("LLM4REC_REQUIRE_BUNDLE") == "1" {
			t.Fatalf("no export virtualenv at %s (%v) and LLM4REC_REQUIRE_BUNDLE=1: run `make venv`", py, err)
		}
		t.Skipf("no export virtualenv at %s (%v): run `make venv`", py, err)
	}
	return py
}

// Two tiny synthetic catalogs are made, loaded into the real engine and measured; a second
// run finds them in the cache and measures the approximate index's recall against exact.
func TestScaleOnSyntheticCatalogs(t *testing.T) {
	py := needPython(t)
	cache := t.TempDir()
	cfg := Config{Items: []int{48, 40}, CacheDir: cache, Python: py, ExportDir: "../../export",
		Callers: []int{1, 2}, Duration: 150 * time.Millisecond, HistoryLen: 8, K: 5,
		Runtime: ort.Options{Provider: ort.ProviderCPU, IntraOpThreads: 1}}
	var progress bytes.Buffer
	cfg.Progress = &progress
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bundles) != 2 || rep.Bundles[0].Items != 40 || rep.Bundles[1].Items != 48 {
		t.Fatalf("want the two catalogs in size order, got %+v", rep.Bundles)
	}
	for _, b := range rep.Bundles {
		if b.Error != "" {
			t.Fatalf("%s: %s", b.Dir, b.Error)
		}
		if !b.Synthesized || b.Dir != filepath.Join(cache, "items-"+strconv.Itoa(b.Items)) || b.Name != "synthetic-"+strconv.Itoa(b.Items) {
			t.Errorf("bundle %+v: want it synthesized into the cache", b)
		}
		if _, err := bundle.Validate(b.Dir, nil); err != nil {
			t.Errorf("synthesized bundle does not validate: %v", err)
		}
		if b.LoadSeconds <= 0 || b.ValidateSeconds <= 0 || b.RSSAfterMB <= 0 || b.RSSBeforeMB <= 0 ||
			b.LoadRSSMB != b.RSSAfterMB-b.RSSBeforeMB || b.GoHeapMB <= 0 || b.PeakRSSMB <= 0 ||
			b.BundleBytes < 90<<20 || b.Index != "exact" || b.Recall10 != nil || b.SteeringRank != 64 {
			t.Errorf("load and memory of %s: %+v", b.Name, b)
		}
		if len(b.Points) != 4 {
			t.Fatalf("%s: want history and query at 1 and 2 callers, got %+v", b.Name, b.Points)
		}
		for i, p := range b.Points {
			want := Point{Kind: AllKinds[i/2], Callers: []int{1, 2}[i%2]}
			if p.Kind != want.Kind || p.Callers != want.Callers {
				t.Errorf("point %d is %s x%d, want %s x%d", i, p.Kind, p.Callers, want.Kind, want.Callers)
			}
			if p.Errors != 0 || p.Calls < p.Callers || p.PerSec <= 0 || p.Latency.Count != p.Calls ||
				p.Latency.P50 <= 0 || p.Latency.P50 > p.Latency.P99 {
				t.Errorf("%s %s x%d: %+v", b.Name, p.Kind, p.Callers, p)
			}
			if p.Stages.Fusion <= 0 || p.Stages.Generate <= 0 {
				t.Errorf("%s %s x%d: stages %+v", b.Name, p.Kind, p.Callers, p.Stages)
			}
		}
		// only a query runs an encoder (the text encoder, milliseconds)
		if h, q := b.point(KindHistory, 1).Stages.Encode, b.point(KindQuery, 1).Stages.Encode; q <= h || q < 0.1 {
			t.Errorf("%s: encode stage %.3f ms with a query, %.3f ms without", b.Name, q, h)
		}
	}
	if len(rep.P50Ratio) != 2 || rep.P50Ratio[KindHistory] <= 0 || rep.P50Ratio[KindQuery] <= 0 {
		t.Errorf("p50 ratios %v", rep.P50Ratio)
	}
	if !strings.Contains(progress.String(), "synthesizing 40 items") {
		t.Errorf("progress: %s", progress.String())
	}

	var table bytes.Buffer
	if err := rep.WriteTable(&table); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"synthetic-40", "synthetic-48", "history", "query", "rank 64", "p50 at one caller, largest catalog over smallest"} {
		if !strings.Contains(table.String(), s) {
			t.Errorf("table lacks %q:\n%s", s, table.String())
		}
	}
	out := t.TempDir()
	path, err := rep.WriteJSON(out)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	raw, _ := os.ReadFile(path)
	if err := json.Unmarshal(raw, &back); err != nil || len(back.Bundles) != 2 || back.Kind != "scale" ||
		back.Bundles[1].Points[3].Latency.P99 != rep.Bundles[1].Points[3].Latency.P99 {
		t.Errorf("scale.json: %v\n%s", err, raw)
	}
	pngs, err := rep.WritePlots(out)
	if err != nil || len(pngs) != 1 {
		t.Fatalf("plots %v: %v", pngs, err)
	}
	if png, _ := os.ReadFile(pngs[0]); !bytes.HasPrefix(png, []byte("\x89PNG")) {
		t.Errorf("%s is not a PNG", pngs[0])
	}

	// the cache answers the second time; the approximate index searches more candidates
	// (EfSearch 100) than these catalogs have, so it finds exactly what the scan finds
	cfg.Items, cfg.Bundles = []int{40}, []string{filepath.Join(cache, "items-48")}
	cfg.Kinds, cfg.Callers = []Kind{KindHistory}, []int{1}
	cfg.Engine.Index = retrieval.IndexHNSW
	rep, err = Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Bundles) != 2 {
		t.Fatalf("bundles %+v", rep.Bundles)
	}
	for _, b := range rep.Bundles {
		if b.Error != "" || b.Synthesized || b.Index != "hnsw" || b.Recall10 == nil || *b.Recall10 != 1 ||
			b.RecallQueries != recallQueries || len(b.Points) != 1 {
			t.Errorf("second run, hnsw: %+v", b)
		}
	}
	checkLowRankSteering(t, filepath.Join(cache, "items-40"))
}

// checkLowRankSteering: a synthesized bundle ships its steering map's output factor
// (fusion.steering_up), and the engine ranking with it (the catalog's steering terms taken in
// the map's rank) answers queries as the same bundle without it (the full product).
func checkLowRankSteering(t *testing.T, dir string) {
	t.Helper()
	m, err := bundle.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	up := m.Fusion.SteeringUp
	if up == nil || up.DType != "float32" || len(up.Shape) != 2 || up.Shape[0] != m.EmbeddingDim || up.Shape[1] < 1 {
		t.Fatalf("fusion.steering_up %+v", up)
	}
	// the same bundle without the section: every file linked, the manifest rewritten
	twin := t.TempDir()
	err = filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		switch {
		case d.IsDir():
			return os.MkdirAll(filepath.Join(twin, rel), 0o755)
		case rel == bundle.ManifestFile:
			return nil
		}
		return os.Symlink(path, filepath.Join(twin, rel))
	})
	if err != nil {
		t.Fatal(err)
	}
	var raw map[string]any
	b, _ := os.ReadFile(filepath.Join(dir, bundle.ManifestFile))
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw["fusion"].(map[string]any), "steering_up")
	b, _ = json.Marshal(raw)
	if err := os.WriteFile(filepath.Join(twin, bundle.ManifestFile), b, 0o644); err != nil {
		t.Fatal(err)
	}
	rt, err := ort.Open(ort.Options{Provider: ort.ProviderCPU, IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer rt.Close()
	low, err := recommend.Open(dir, rt, recommend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer low.Close()
	full, err := recommend.Open(twin, rt, recommend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	if low.SteeringRank() != up.Shape[1] || full.SteeringRank() != 0 {
		t.Fatalf("steering rank %d with the section (want %d), %d without (want 0)", low.SteeringRank(), up.Shape[1], full.SteeringRank())
	}
	zero := 0.0
	for i, q := range []string{"a story about robots", "something funny for the weekend", "a quiet documentary"} {
		req := recommend.Request{History: []string{low.Items()[i].ID, low.Items()[i+5].ID}, Query: q, K: 10, ExcludeSeen: true, Alpha: &zero}
		a, err := low.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		c, err := full.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Items) != len(c.Items) || len(a.Items) == 0 {
			t.Fatalf("%q: %d items against %d", q, len(a.Items), len(c.Items))
		}
		for j := range a.Items {
			x, y := a.Items[j], c.Items[j]
			if x.ItemID != y.ItemID || math.Abs(float64(x.Score-y.Score)) > 1e-4*(1+math.Abs(float64(y.Score))) {
				t.Fatalf("%q, rank %d: %s %.6f in the rank, %s %.6f by the full product", q, j, x.ItemID, x.Score, y.ItemID, y.Score)
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := Run(context.Background(), Config{}); err == nil || !strings.Contains(err.Error(), "give bundles or catalog sizes") {
		t.Errorf("no bundles: %v", err)
	}
	if _, err := Run(context.Background(), Config{Bundles: []string{t.TempDir()}}); err == nil || !strings.Contains(err.Error(), "manifest") {
		t.Errorf("a folder without a bundle: %v", err)
	}
	_, _, err := Synthesize(context.Background(), Config{CacheDir: t.TempDir(), Python: filepath.Join(t.TempDir(), "no-python")}, 100)
	if err == nil || !strings.Contains(err.Error(), "make venv") {
		t.Errorf("missing interpreter: %v", err)
	}
	if ks, err := ParseKinds("query,history"); err != nil || len(ks) != 2 || ks[0] != KindQuery {
		t.Errorf("kinds %v %v", ks, err)
	}
	if _, err := ParseKinds("image"); err == nil {
		t.Error("unknown kind accepted")
	}
}
