package recommend

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/llm4rec/llm4rec/internal/racemode"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// testBundle is the bundle under test: $LLM4REC_TEST_BUNDLE, else the committed default bundle
// (with its fetched text-encoder weights).
func testBundle(t testing.TB) string {
	t.Helper()
	dir := os.Getenv("LLM4REC_TEST_BUNDLE")
	if dir == "" {
		dir, _ = filepath.Abs("../../models/movielens-100k/1")
	}
	for _, f := range []string{"manifest.json", "text_encoder.weights"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			if os.Getenv("LLM4REC_REQUIRE_BUNDLE") == "1" {
				t.Fatalf("bundle %s not installed (%v) and LLM4REC_REQUIRE_BUNDLE=1: run `make weights`", dir, err)
			}
			t.Skipf("bundle %s not installed (%v): run `make weights`", dir, err)
		}
	}
	return dir
}

var (
	engOnce sync.Once
	engErr  error
	eng     *Engine
	rt      *ort.Runtime
)

func testEngine(t testing.TB) *Engine {
	dir := testBundle(t)
	engOnce.Do(func() {
		rt, engErr = ort.Open(ort.Options{Provider: ort.ProviderCPU})
		if engErr == nil {
			eng, engErr = Open(dir, rt, Config{})
		}
	})
	if engErr != nil {
		t.Fatal(engErr)
	}
	return eng
}

type tensorFile struct {
	File  string  `json:"file"`
	DType string  `json:"dtype"`
	Shape []int64 `json:"shape"`
}

type goldenIndex struct {
	Cases []struct {
		Name    string                `json:"name"`
		Graph   string                `json:"graph"`
		Inputs  map[string]tensorFile `json:"inputs"`
		Outputs map[string]tensorFile `json:"outputs"`
	} `json:"cases"`
	Preprocess struct {
		Text struct {
			Strings       []string  `json:"strings"`
			InputIDs      [][]int64 `json:"input_ids"`
			AttentionMask [][]int64 `json:"attention_mask"`
		} `json:"text"`
	} `json:"preprocess"`
	Recommend []struct {
		UserID  string    `json:"user_id"`
		History []string  `json:"history"`
		Query   string    `json:"query"`
		Context []string  `json:"context"`
		Top10   []string  `json:"top10"`
		Scores  []float64 `json:"scores"`
	} `json:"recommend"`
}

func readGolden(t testing.TB, e *Engine) goldenIndex {
	raw, err := os.ReadFile(filepath.Join(e.dir, e.manifest.Golden.Index))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenIndex
	if err := json.Unmarshal(raw, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func readTensor(t testing.TB, dir, name string, tf tensorFile) ort.Tensor {
	raw, err := os.ReadFile(filepath.Join(dir, tf.File))
	if err != nil {
		t.Fatal(err)
	}
	out := ort.Tensor{Name: name, Shape: tf.Shape}
	switch tf.DType {
	case "float32":
		out.Float32 = make([]float32, len(raw)/4)
		for i := range out.Float32 {
			out.Float32[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
		}
	case "int64":
		out.Int64 = make([]int64, len(raw)/8)
		for i := range out.Int64 {
			out.Int64[i] = int64(binary.LittleEndian.Uint64(raw[8*i:]))
		}
	default:
		t.Fatalf("dtype %s", tf.DType)
	}
	return out
}

// Every graph, run by ONNX Runtime from Go on the golden inputs, gives PyTorch's outputs
// within the manifest's tolerance: |got - want| <= atol + rtol*|want|.
func TestGraphParityWithGoldens(t *testing.T) {
	e := testEngine(t)
	g := readGolden(t, e)
	gdir := filepath.Dir(filepath.Join(e.dir, e.manifest.Golden.Index))
	atol, rtol := e.manifest.Golden.ATol, e.manifest.Golden.RTol
	if len(g.Cases) < 5 {
		t.Fatalf("only %d golden cases", len(g.Cases))
	}
	for _, c := range g.Cases {
		var inputs []ort.Tensor
		for name, tf := range c.Inputs {
			inputs = append(inputs, readTensor(t, gdir, name, tf))
		}
		outs, err := e.sessions[c.Graph].Run(inputs)
		if err != nil {
			t.Fatalf("%s: %v", c.Name, err)
		}
		for _, o := range outs {
			tf, ok := c.Outputs[o.Name]
			if !ok {
				continue
			}
			want := readTensor(t, gdir, o.Name, tf)
			if fmt.Sprint(o.Shape) != fmt.Sprint(want.Shape) {
				t.Fatalf("%s %s: shape %v want %v", c.Name, o.Name, o.Shape, want.Shape)
			}
			worst := 0.0
			for i, w := range want.Float32 {
				d := math.Abs(float64(o.Float32[i] - w))
				if d > atol+rtol*math.Abs(float64(w)) {
					t.Fatalf("%s %s[%d]: %v want %v", c.Name, o.Name, i, o.Float32[i], w)
				}
				worst = max(worst, d)
			}
			t.Logf("%-22s %-15s max |diff| %.2g", c.Name, o.Name, worst)
		}
	}
}

// The tokenizer gives the export's ids; the text encoder path through the batcher gives the
// export's embeddings for them.
func TestTextPreprocessingParity(t *testing.T) {
	e := testEngine(t)
	g := readGolden(t, e)
	b, err := e.tok.EncodeBatch(g.Preprocess.Text.Strings)
	if err != nil {
		t.Fatal(err)
	}
	for i := range g.Preprocess.Text.Strings {
		row := b.InputIDs[i*b.Len : (i+1)*b.Len]
		mask := b.AttentionMask[i*b.Len : (i+1)*b.Len]
		if !slices.Equal(row, g.Preprocess.Text.InputIDs[i]) || !slices.Equal(mask, g.Preprocess.Text.AttentionMask[i]) {
			t.Fatalf("text %d:\n ids %v mask %v\nwant %v %v", i, row, mask, g.Preprocess.Text.InputIDs[i], g.Preprocess.Text.AttentionMask[i])
		}
	}
}

// End to end: for the golden users the Go engine recommends the same top 10 as the export's
// PyTorch model (same history, IPS off, seen items excluded), with the same retrieved context;
// with a typed query too, where the bundle's fusion steers the list.
func TestRecommendationsMatchExport(t *testing.T) {
	checkRecommendations(t, testEngine(t))
}

// Every other committed bundle (models/NAME/VERSION) serves what its export computed: its
// graphs match their goldens and its golden recommendations come out of the engine.
func TestCommittedBundlesMatchTheirExports(t *testing.T) {
	dirs, _ := filepath.Glob("../../models/*/*/manifest.json")
	def, _ := filepath.Abs(testBundle(t))
	for _, m := range dirs {
		dir, _ := filepath.Abs(filepath.Dir(m))
		if dir == def {
			continue
		}
		t.Run(filepath.Base(filepath.Dir(dir)), func(t *testing.T) {
			if _, err := os.Stat(filepath.Join(dir, "text_encoder.weights")); err != nil {
				t.Skipf("bundle %s not installed (%v): run `make weights`", dir, err)
			}
			testEngine(t) // the shared runtime
			e, err := Open(dir, rt, Config{})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			checkRecommendations(t, e)
		})
	}
}

func checkRecommendations(t *testing.T, e *Engine) {
	g := readGolden(t, e)
	if len(g.Recommend) == 0 {
		t.Fatal("no golden recommendation cases")
	}
	zero := 0.0
	for _, c := range g.Recommend {
		resp, err := e.Recommend(context.Background(), Request{History: c.History, Query: c.Query, K: 10, ExcludeSeen: true, Alpha: &zero})
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, it := range resp.Items {
			got = append(got, it.ItemID)
		}
		gs, ws := slices.Clone(got), slices.Clone(c.Top10)
		slices.Sort(gs)
		slices.Sort(ws)
		if !slices.Equal(gs, ws) {
			t.Errorf("user %s: top 10 %v, export %v", c.UserID, got, c.Top10)
		}
		if c.Context != nil && !slices.Equal(resp.Context, c.Context) {
			t.Errorf("user %s: context %v, export %v", c.UserID, resp.Context, c.Context)
		}
		if c.Query != "" {
			continue
		}
		// without a request, Engine.TopK of LogProbs is the same list in the same order:
		// what replays of the online learner rely on
		lp, err := e.LogProbs(context.Background(), c.History)
		if err != nil {
			t.Fatal(err)
		}
		seen := make([]bool, len(e.items))
		for _, id := range c.History {
			if r, ok := e.byID[id]; ok {
				seen[r] = true
			}
		}
		var fromLP []string
		for _, r := range e.TopK(lp, seen, 10) {
			fromLP = append(fromLP, e.items[r].ID)
		}
		if !slices.Equal(fromLP, got) {
			t.Errorf("user %s: TopK(LogProbs) %v, Recommend %v", c.UserID, fromLP, got)
		}
	}
}

func TestIPSMovesPopularItemsDown(t *testing.T) {
	e := testEngine(t)
	hist := []string{e.items[0].ID, e.items[1].ID}
	// live popularity: feedback makes every third item popular (on top of what the bundle ships)
	for i := range e.items {
		if i%3 == 0 {
			for k := 0; k < 40; k++ {
				e.stats.Observe(i, time.Unix(1e9, 0), nil)
			}
		}
	}
	arp := func(alpha float64) float64 {
		resp, err := e.Recommend(context.Background(), Request{History: hist, K: 10, ExcludeSeen: true, Alpha: &alpha})
		if err != nil {
			t.Fatal(err)
		}
		var s float64
		for _, it := range resp.Items {
			s += e.stats.Count(e.byID[it.ItemID])
		}
		return s / float64(len(resp.Items))
	}
	a0, a1, a3 := arp(0), arp(1), arp(3)
	t.Logf("average popularity of the top 10: alpha 0 %.1f, 1 %.1f, 3 %.1f", a0, a1, a3)
	if !(a1 < a0 && a3 <= a1) {
		t.Fatalf("IPS did not move popular items down: %.1f %.1f %.1f", a0, a1, a3)
	}
}

func TestSlateModeConditionsOnEarlierPicks(t *testing.T) {
	e := testEngine(t)
	hist := []string{e.items[2].ID, e.items[3].ID, e.items[4].ID}
	zero := 0.0
	slate, err := e.Recommend(context.Background(), Request{History: hist, K: 5, ExcludeSeen: true, Mode: ModeSlate, Alpha: &zero})
	if err != nil {
		t.Fatal(err)
	}
	top, _ := e.Recommend(context.Background(), Request{History: hist, K: 5, ExcludeSeen: true, Alpha: &zero})
	if len(slate.Items) != 5 || slate.Items[0].ItemID != top.Items[0].ItemID {
		t.Fatalf("slate %v, top-k %v: the first pick must agree", slate.Items, top.Items)
	}
	seen := map[string]bool{}
	for _, it := range slate.Items {
		if seen[it.ItemID] || slices.Contains(hist, it.ItemID) {
			t.Fatalf("slate repeats or includes a seen item: %v", slate.Items)
		}
		seen[it.ItemID] = true
	}
	if _, err := e.Recommend(context.Background(), Request{History: hist, K: e.maxSteps + 1, Mode: ModeSlate}); err == nil {
		t.Fatal("slate longer than the generator's steps accepted")
	}
}

func TestBadRequests(t *testing.T) {
	e := testEngine(t)
	neg := -1.0
	for name, req := range map[string]Request{
		"unknown item":  {History: []string{"no-such-item"}},
		"k too large":   {History: []string{e.items[0].ID}, K: 101},
		"negative k":    {History: []string{e.items[0].ID}, K: -1},
		"bad mode":      {History: []string{e.items[0].ID}, Mode: "beam"},
		"alpha < 0":     {History: []string{e.items[0].ID}, Alpha: &neg},
		"garbage image": {Image: []byte("not an image")},
		"garbage audio": {Audio: []byte("RIFF....WAVE")},
	} {
		if _, err := e.Recommend(context.Background(), req); err == nil || !errorsIsRequest(err) {
			t.Errorf("%s: %v, want ErrRequest", name, err)
		}
	}
}

func errorsIsRequest(err error) bool {
	for ; err != nil; err = unwrap(err) {
		if err == ErrRequest {
			return true
		}
	}
	return false
}

func unwrap(err error) error {
	if u, ok := err.(interface{ Unwrap() error }); ok {
		return u.Unwrap()
	}
	if u, ok := err.(interface{ Unwrap() []error }); ok {
		for _, x := range u.Unwrap() {
			if errorsIsRequest(x) {
				return ErrRequest
			}
		}
	}
	return nil
}

// Batch invariance through the batcher: many concurrent requests give each the answer it gets
// alone.
func TestConcurrentRequestsMatchSequential(t *testing.T) {
	e := testEngine(t)
	zero := 0.0
	reqs := make([]Request, 24)
	want := make([][]string, len(reqs))
	for i := range reqs {
		n := len(e.items)
		reqs[i] = Request{History: []string{e.items[i%n].ID, e.items[(i*7+3)%n].ID}, K: 10, ExcludeSeen: true, Alpha: &zero}
		if i%4 == 0 {
			reqs[i].Query = fmt.Sprintf("a story about %d robots", i)
		}
		resp, err := e.Recommend(context.Background(), reqs[i])
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range resp.Items {
			want[i] = append(want[i], it.ItemID)
		}
	}
	var wg sync.WaitGroup
	for i := range reqs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			resp, err := e.Recommend(context.Background(), reqs[i])
			if err != nil {
				t.Error(err)
				return
			}
			var got []string
			for _, it := range resp.Items {
				got = append(got, it.ItemID)
			}
			if !slices.Equal(got, want[i]) {
				t.Errorf("request %d: concurrent %v, alone %v", i, got, want[i])
			}
		}(i)
	}
	wg.Wait()
}

// The bundle's training counts seed the live popularity that IPS reads.
func TestPopularitySeededFromBundle(t *testing.T) {
	e := testEngine(t)
	shipped := 0.0
	for i, it := range e.items {
		shipped += it.Popularity
		if e.stats.Count(i) < it.Popularity {
			t.Fatalf("item %s: live count %v below the bundle's %v", it.ID, e.stats.Count(i), it.Popularity)
		}
	}
	if shipped == 0 {
		t.Skip("this bundle ships no training counts")
	}
	if got := e.stats.Propensity(0); got <= e.stats.Config().ClipMin {
		t.Fatalf("propensity of a shipped item %v is only the clip", got)
	}
}

// A bundle whose ranking section is malformed is refused when opened, with the field named.
func TestOpenRefusesBadRankingSection(t *testing.T) {
	src := testBundle(t)
	testEngine(t) // the shared runtime
	raw, err := os.ReadFile(filepath.Join(src, "manifest.json"))
	if err != nil {
		t.Fatal(err)
	}
	var man map[string]any
	if err := json.Unmarshal(raw, &man); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		ranking map[string]any
		want    string
	}{
		"negative diversity": {map[string]any{"diversity": map[string]any{"weight": -1, "candidates": 50}}, "ranking.diversity"},
		"no candidates":      {map[string]any{"diversity": map[string]any{"weight": 1, "candidates": 0}}, "ranking.diversity"},
		"wrong table shape": {map[string]any{"diversity": map[string]any{"weight": 0, "candidates": 50},
			"similar_items": map[string]any{"rows": map[string]any{"file": "item_embeddings.f32", "dtype": "int32", "shape": []int{3, 2}},
				"weights": map[string]any{"file": "item_embeddings.f32", "dtype": "float32", "shape": []int{3, 2}},
				"weight":  1, "decay": 1, "max_history": 10}}, "ranking.similar_items"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
				if err != nil || p == src || d.Name() == "manifest.json" {
					return err
				}
				rel, _ := filepath.Rel(src, p)
				if d.IsDir() {
					return os.Mkdir(filepath.Join(dir, rel), 0o755)
				}
				return os.Symlink(p, filepath.Join(dir, rel))
			})
			if err != nil {
				t.Fatal(err)
			}
			man["ranking"] = c.ranking
			b, _ := json.Marshal(man)
			if err := os.WriteFile(filepath.Join(dir, "manifest.json"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			e, err := Open(dir, rt, Config{})
			if err == nil {
				e.Close()
				t.Fatal("opened")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one naming %s", err, c.want)
			}
		})
	}
}

// A request whose deadline is nearer than the graphs' expected waits together is refused at
// once with batch.ErrWouldMissDeadline, before any graph runs for it.
func TestRecommendAdmitsByDeadline(t *testing.T) {
	e := testEngine(t)
	req := Request{History: []string{e.items[0].ID, e.items[1].ID}, K: 5}
	if _, err := e.Recommend(context.Background(), req); err != nil { // the batchers have run once
		t.Fatal(err)
	}
	wait := e.expectedWait(req)
	if wait <= 0 {
		t.Fatalf("expected wait %v after a run", wait)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait/2)
	defer cancel()
	if _, err := e.Recommend(ctx, req); !errors.Is(err, batch.ErrWouldMissDeadline) {
		t.Fatalf("deadline of half the expected wait: %v", err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), time.Minute)
	defer cancel2()
	if _, err := e.Recommend(ctx2, req); err != nil {
		t.Fatalf("deadline of a minute: %v", err)
	}
}

// The engine opened with the inverted-file index retrieves through it: most context items are
// the exact scan's, every answer is a full list of unseen items, and the lists mostly agree
// with the exact engine's (the context is one input of fusion among many).
func TestEngineWithIVFIndex(t *testing.T) {
	exact := testEngine(t)
	e, err := Open(testBundle(t), rt, Config{Index: retrieval.IndexIVF})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if retrieval.KindOf(e.Index()) != retrieval.IndexIVF || retrieval.KindOf(exact.Index()) != retrieval.IndexExact {
		t.Fatalf("indexes %q and %q", retrieval.KindOf(e.Index()), retrieval.KindOf(exact.Index()))
	}
	zero := 0.0
	sameCtx, ctxTotal, sameItems, itemTotal := 0, 0, 0, 0
	n := len(e.Items())
	for u := 0; u < 30; u++ {
		var hist []string
		for j := 0; j < 20; j++ {
			hist = append(hist, e.Items()[(u*131+j*17)%n].ID)
		}
		req := Request{History: hist, K: 10, ExcludeSeen: true, Alpha: &zero}
		a, err := e.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		b, err := exact.Recommend(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		if len(a.Items) != 10 || len(a.Context) != len(b.Context) {
			t.Fatalf("user %d: %d items, %d context items (exact %d)", u, len(a.Items), len(a.Context), len(b.Context))
		}
		seen := map[string]bool{}
		for _, h := range hist {
			seen[h] = true
		}
		want := map[string]bool{}
		for _, id := range b.Context {
			want[id] = true
		}
		for _, id := range a.Context {
			if want[id] {
				sameCtx++
			}
		}
		ctxTotal += len(b.Context)
		top := map[string]bool{}
		for _, it := range b.Items {
			top[it.ItemID] = true
		}
		for _, it := range a.Items {
			if seen[it.ItemID] {
				t.Fatalf("user %d: seen item %s listed", u, it.ItemID)
			}
			if top[it.ItemID] {
				sameItems++
			}
		}
		itemTotal += len(b.Items)
	}
	ctxShare, itemShare := float64(sameCtx)/float64(ctxTotal), float64(sameItems)/float64(itemTotal)
	t.Logf("ivf against exact: context items %.3f the same, top 10 %.3f the same", ctxShare, itemShare)
	if ctxShare < 0.5 || itemShare < 0.7 {
		t.Fatalf("context %.3f, top 10 %.3f the same as with the exact scan", ctxShare, itemShare)
	}
}

// A warm request allocates only what it answers (the response, its items and its context
// ids): fusion's inputs and answer, the generator's logits, the marks, the steering and
// similar-items terms, the ranked rows and picks live in pooled per-request memory, and
// nothing answered points into it (an earlier response is unchanged by later requests).
func TestRecommendAllocatesOnlyTheResponse(t *testing.T) {
	if racemode.Enabled {
		t.Skip("allocations are counted without the race detector (its sync.Pool drops items at random)")
	}
	e := testEngine(t)
	ctx := context.Background()
	zero := 0.0
	reqs := []Request{
		{History: []string{e.items[3].ID, e.items[40].ID, e.items[7].ID}, K: 10, ExcludeSeen: true, Alpha: &zero},
		{History: []string{e.items[100].ID, e.items[9].ID}, K: 5},
		// a typed query (its embedding cached after the first request): the steering terms too
		{History: []string{e.items[5].ID}, K: 10, Query: "something to read at night"},
	}
	first, err := e.Recommend(ctx, reqs[0])
	if err != nil {
		t.Fatal(err)
	}
	kept := *first
	kept.Items, kept.Context = slices.Clone(first.Items), slices.Clone(first.Context)
	for _, req := range reqs {
		var err error
		if a := testing.AllocsPerRun(30, func() { _, err = e.Recommend(ctx, req) }); a > 3 || err != nil {
			t.Errorf("history of %d, k %d: %v allocations per request (at most 3: the response, its items, its context), error %v", len(req.History), req.K, a, err)
		}
	}
	if !slices.EqualFunc(first.Items, kept.Items, func(a, b Recommendation) bool {
		return a.ItemID == b.ItemID && a.Score == b.Score && a.LogProb == b.LogProb
	}) || !slices.Equal(first.Context, kept.Context) {
		t.Fatalf("a response changed after later requests:\n%+v\nwas\n%+v", first.Items, kept.Items)
	}
}
