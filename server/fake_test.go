package server

import (
	"context"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/popularity"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// fakeBundle and fakeBundleReversed are the bundle directories fakeBackend opens as
// fakeEngines: the same items, the second in the opposite catalog order (another model of the
// same catalog).
const (
	fakeBundle         = "fake-bundle"
	fakeBundleReversed = "fake-bundle-reversed"
)

// fakeItems is the size of the fake catalog; item ids are "1" to "100".
const fakeItems = 100

// fakeBackend opens fakeEngines without ONNX Runtime. Any other directory gets the bundle
// validator's verdict (without loading graphs), then a refusal: a broken bundle fails the way
// it fails in production.
type fakeBackend struct {
	opened atomic.Int64
	// onOpen, when set, runs in Open before the engine is returned: what happens while a
	// bundle loads.
	onOpen func()
	// wrap, when set, wraps every engine opened (a test's own behaviour over the fake).
	wrap func(Recommender) Recommender
}

func (b *fakeBackend) Provider() string { return "cpu" }

func (b *fakeBackend) Open(dir string, cfg recommend.Config) (Recommender, error) {
	if dir != fakeBundle && dir != fakeBundleReversed {
		if _, err := bundle.Validate(dir, nil); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("fake backend: opens only %q and %q, not %s", fakeBundle, fakeBundleReversed, dir)
	}
	b.opened.Add(1)
	if b.onOpen != nil {
		b.onOpen()
	}
	var r Recommender = newFakeEngine(cfg, dir == fakeBundleReversed)
	if b.wrap != nil {
		r = b.wrap(r)
	}
	return r, nil
}

// fakeEngine is a Recommender over a fixed catalog. It keeps the engine's contract that the
// handlers rely on: the same request checks and error classes (recommend.ErrRequest, media
// decoded by the preprocess package, batch.ErrClosed once closed, batch.ErrDeadline for an
// expired context), live popularity and IPS, the online bias, the embedding cache, and a
// graph run reported to Config.Observe per stage. Its ranking is a deterministic function of
// the whole history, so a longer history changes the list.
type fakeEngine struct {
	cfg      recommend.Config
	manifest *bundle.Manifest
	items    []recommend.Item
	byID     map[string]int
	stats    *popularity.Stats
	bias     *online.Learner
	cache    *retrieval.EmbeddingCache
	closed   atomic.Bool

	mu        sync.Mutex // guards the added items
	added     []recommend.AddedItem
	addedByID map[string]int
}

var _ Recommender = (*fakeEngine)(nil)

// newFakeEngine is the fake catalog, in reverse order when reversed, bound to cfg.Live when
// given.
func newFakeEngine(cfg recommend.Config, reversed bool) *fakeEngine {
	m := &bundle.Manifest{Name: "fake", Version: "1",
		Graphs: map[string]bundle.GraphSpec{bundle.Generator: {File: "generator.onnx"}},
		Files:  map[string]bundle.FileSpec{"generator.onnx": {SHA256: "fake"}},
		IPS: bundle.IPSSpec{DefaultAlpha: 1,
			GroupAlpha: map[string]map[string]float64{"gender": {"F": 0.5, "M": 2}}}}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = 1000
	}
	if cfg.MaxK <= 0 {
		cfg.MaxK = 100
	}
	if cfg.DefaultAlpha == nil {
		a := m.IPS.DefaultAlpha
		cfg.DefaultAlpha = &a
	}
	if reversed {
		m.Version = "1-reversed"
	}
	f := &fakeEngine{cfg: cfg, manifest: m, byID: map[string]int{}, cache: retrieval.NewEmbeddingCache(64)}
	ids := make([]string, fakeItems)
	for i := range fakeItems {
		n := i + 1
		if reversed {
			n = fakeItems - i
		}
		id := strconv.Itoa(n)
		f.items = append(f.items, recommend.Item{ID: id, Title: "Item " + id, Categories: []string{"Genre " + strconv.Itoa((n-1)%5)}})
		f.byID[id] = i
		ids[i] = id
	}
	liveItems := cfg.Live
	if liveItems == nil {
		liveItems = popularity.NewLive(cfg.Popularity)
	}
	f.stats = liveItems.Bind(ids, cfg.Popularity)
	if cfg.Online.Rate >= 0 {
		f.bias = online.New(fakeItems, fakeStateDim, cfg.Online)
	}
	return f
}

func (f *fakeEngine) Manifest() *bundle.Manifest       { return f.manifest }
func (f *fakeEngine) Items() []recommend.Item          { return f.items }
func (f *fakeEngine) Stats() *popularity.Stats         { return f.stats }
func (f *fakeEngine) Learner() *online.Learner         { return f.bias }
func (f *fakeEngine) Cache() *retrieval.EmbeddingCache { return f.cache }

func (f *fakeEngine) Row(id string) (int, bool) {
	if r, ok := f.byID[id]; ok {
		return r, true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	j, ok := f.addedByID[id]
	return len(f.items) + j, ok
}

func (f *fakeEngine) Item(row int) (recommend.Item, bool) {
	if row >= 0 && row < len(f.items) {
		return f.items[row], true
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if j := row - len(f.items); j >= 0 && j < len(f.added) {
		return f.added[j].Item, true
	}
	return recommend.Item{}, false
}

// ItemEmbedding is a unit vector from a hash of the item's text (recommend.ItemText): the
// same text, the same embedding.
func (f *fakeEngine) ItemEmbedding(ctx context.Context, it recommend.NewItem) ([]float32, error) {
	if err := f.run(ctx, bundle.TextEncoder); err != nil {
		return nil, err
	}
	h := fnv.New64a()
	fmt.Fprint(h, recommend.ItemText(it.Item))
	v := make([]float32, fakeStateDim)
	v[h.Sum64()%fakeStateDim] = 1
	return v, nil
}

func (f *fakeEngine) AddItems(items []recommend.AddedItem) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addedByID == nil {
		f.addedByID = map[string]int{}
	}
	for i, a := range items {
		_, inCatalog := f.byID[a.Item.ID]
		_, added := f.addedByID[a.Item.ID]
		if inCatalog || added || slices.ContainsFunc(items[:i], func(b recommend.AddedItem) bool { return b.Item.ID == a.Item.ID }) {
			return fmt.Errorf("%w: item %q is already in the catalog", recommend.ErrRequest, a.Item.ID)
		}
	}
	for _, a := range items {
		f.addedByID[a.Item.ID] = len(f.added)
		f.added = append(f.added, a)
	}
	return nil
}

func (f *fakeEngine) Added() []recommend.AddedItem {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.added)
}

func (f *fakeEngine) QueueDepths() map[string]int {
	out := map[string]int{}
	for _, g := range bundle.RequiredGraphs {
		out[g] = 0
	}
	return out
}

func (f *fakeEngine) Close() error {
	f.closed.Store(true)
	return nil
}

// run stands for one graph run: it answers as a closed or expired batcher would, and reports
// the run to Observe.
func (f *fakeEngine) run(ctx context.Context, graph string) error {
	if f.closed.Load() {
		return batch.ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%w: %w", batch.ErrDeadline, err)
	}
	if f.cfg.Observe != nil {
		f.cfg.Observe(graph, 1, time.Microsecond, nil)
	}
	return nil
}

// logProbs is the fake model: log-softmax of scores that depend on every history item and
// its position.
func (f *fakeEngine) logProbs(hist []int) []float32 {
	h := fnv.New64a()
	for _, r := range hist {
		fmt.Fprint(h, r, ",")
	}
	seed := h.Sum64()
	lp := make([]float32, fakeItems)
	var sum float64
	for i := range lp {
		x := float64((seed>>7+uint64(i)*2654435761)%1000) / 100
		lp[i] = float32(x)
		sum += math.Exp(x)
	}
	lse := float32(math.Log(sum))
	for i := range lp {
		lp[i] -= lse
	}
	return lp
}

func (f *fakeEngine) LearnerInputs(ctx context.Context, history []string) ([]float32, []float32, error) {
	var hist []int
	for _, id := range history {
		if r, ok := f.byID[id]; ok {
			hist = append(hist, r)
		}
	}
	if err := f.run(ctx, bundle.Fusion); err != nil {
		return nil, nil, err
	}
	return fakeState(hist), f.logProbs(hist), nil
}

// fakeStateDim is the length of the fake's user state: the history's count of each of the
// five genres, and 1.
const fakeStateDim = 6

// fakeState is the fake's fused user state of a history (catalog rows).
func fakeState(hist []int) []float32 {
	s := make([]float32, fakeStateDim)
	for _, r := range hist {
		s[r%5]++
	}
	s[5] = 1
	return s
}

func (f *fakeEngine) Recommend(ctx context.Context, req recommend.Request) (*recommend.Response, error) {
	k := req.K
	if k == 0 {
		k = 10
	}
	if k < 0 || k > f.cfg.MaxK {
		return nil, fmt.Errorf("%w: k %d: must be 1 to %d", recommend.ErrRequest, k, f.cfg.MaxK)
	}
	if len(req.History) > f.cfg.MaxHistory {
		return nil, fmt.Errorf("%w: history of %d items exceeds the limit of %d", recommend.ErrRequest, len(req.History), f.cfg.MaxHistory)
	}
	mode := req.Mode
	switch mode {
	case "":
		mode = recommend.ModeTopK
	case recommend.ModeTopK, recommend.ModeSlate:
	default:
		return nil, fmt.Errorf("%w: mode %q: want topk or slate", recommend.ErrRequest, req.Mode)
	}
	alpha := *f.cfg.DefaultAlpha
	if req.Alpha != nil {
		alpha = *req.Alpha
	}
	if math.IsNaN(alpha) || math.IsInf(alpha, 0) || alpha < 0 || alpha > 10 {
		return nil, fmt.Errorf("%w: ips alpha %v: must be within [0, 10]", recommend.ErrRequest, alpha)
	}
	hist := make([]int, len(req.History))
	for i, id := range req.History {
		r, ok := f.byID[id]
		if !ok {
			return nil, fmt.Errorf("%w: unknown item id %q in history", recommend.ErrRequest, id)
		}
		hist[i] = r
	}
	if req.Query != "" {
		key := retrieval.KeyOf("text", []byte(req.Query))
		if _, ok := f.cache.Get(key); !ok {
			if err := f.run(ctx, bundle.TextEncoder); err != nil {
				return nil, err
			}
			f.cache.Add(key, []float32{1})
		}
	}
	if len(req.Image) > 0 {
		if _, err := f.cfg.Image.AppendPixels(nil, req.Image); err != nil {
			return nil, fmt.Errorf("%w: image: %w", recommend.ErrRequest, err)
		}
		if err := f.run(ctx, bundle.ImageEncoder); err != nil {
			return nil, err
		}
	}
	if len(req.Audio) > 0 {
		if _, _, err := f.cfg.Audio.LogMel(req.Audio); err != nil {
			return nil, fmt.Errorf("%w: audio: %w", recommend.ErrRequest, err)
		}
		if err := f.run(ctx, bundle.AudioEncoder); err != nil {
			return nil, err
		}
	}
	for _, g := range []string{bundle.Fusion, bundle.Generator} {
		if err := f.run(ctx, g); err != nil {
			return nil, err
		}
	}
	lp := f.logProbs(hist)
	score := append([]float32(nil), lp...)
	if f.bias != nil {
		f.bias.Add(fakeState(hist), score)
	}
	if alpha != 0 {
		f.stats.ReweightAll(score, alpha)
	}
	seen := map[int]bool{}
	if req.ExcludeSeen {
		for _, r := range hist {
			seen[r] = true
		}
	}
	resp := &recommend.Response{Alpha: alpha, Mode: mode}
	for len(resp.Items) < k {
		best := -1
		for i := range score {
			if !seen[i] && (best < 0 || score[i] > score[best]) {
				best = i
			}
		}
		if best < 0 {
			break
		}
		seen[best] = true
		it := f.items[best]
		resp.Items = append(resp.Items, recommend.Recommendation{ItemID: it.ID, Title: it.Title,
			Categories: it.Categories, LogProb: lp[best], Score: score[best]})
	}
	return resp, nil
}
