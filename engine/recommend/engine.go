// Package recommend is the engine's pipeline: everything between a decoded request and a
// ranked, explained list, over a model bundle's five ONNX graphs.
//
//	request -> encoders (text/image/audio, dynamically batched, embeddings cached by content)
//	        -> retrieval of context items -> fusion (batched) -> generator decode loop (KV cache)
//	        -> log-probabilities of valid items -> IPS reweighting -> top k -> explanations
//
// The serving rule reproduces the export's (export/llm4rec_export/rank.py): fusion sees the
// last max_history items of the history; context is the max_context items nearest (dot
// product with the catalog's item embeddings) to the sum of the present modality embeddings,
// else to the sum of the history embeddings, excluding those history items; the generator's
// first step from [BOS] scores every item.
package recommend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/semaphore"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/explain"
	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/popularity"
	"github.com/llm4rec/llm4rec/engine/preprocess"
	"github.com/llm4rec/llm4rec/engine/ranking"
	"github.com/llm4rec/llm4rec/engine/retrieval"
	"github.com/llm4rec/llm4rec/engine/tokenizer"
)

// Config sets the pipeline's limits and batching. Zero fields take the documented defaults.
type Config struct {
	// Batch configures the dynamic batcher of each encoder and of fusion (defaults: batch
	// package defaults, MaxBatch 64, MaxWait 500µs, QueueSize 1024).
	Batch batch.Config
	// TextReplicas is how many sessions of the text encoder serve queries, each with its own
	// batcher, a request going to the least busy (batch.Pool). Default: on the CPU provider
	// the smaller of 2 and GOMAXPROCS, on CUDA 1. A session runs one batch at a time on one
	// core (with the engine's one intra-op thread), and when every request carries a new query
	// the text encoder is what the load waits on: two replicas on 2 cores served more queries a
	// second than one session with two threads (bench/README.md, bench peers).
	TextReplicas int
	// CacheSize is how many query embeddings (text, image, audio) the LRU keeps (default 4096).
	CacheSize int
	// Index is the retrieval index the context items are found with (default
	// retrieval.IndexAuto: an exact scan of every item under retrieval.AutoIVFItems items,
	// the approximate inverted file retrieval.IndexIVF from there; retrieval.IndexHNSW is the
	// other approximate one. Approximate indexes are built at load; `llm4rec bench scale`
	// measures each and its recall@10 against exact).
	Index retrieval.IndexKind
	// MaxHistory bounds the history ids a request may carry (default 1000); fusion itself
	// reads the last max_history of the manifest.
	MaxHistory int
	// MaxK bounds how many items a request may ask for (default 100).
	MaxK int
	// DefaultAlpha is the IPS strength used when a request gives none (default: the
	// manifest's ips.default_alpha).
	DefaultAlpha *float64
	// Image and Audio carry the upload limits; the recipe constants come from the manifest.
	Image preprocess.ImageConfig
	Audio preprocess.AudioConfig
	// Popularity configures the live statistics (default: smoothing and clip from the
	// manifest's ips section).
	Popularity popularity.Config
	// Live, when set, is the id-keyed statistics the engine's view reads and feedback updates,
	// shared with other engines (a server's, which outlive a reload); nil: the engine keeps
	// its own.
	Live *popularity.Live
	// Online configures the online learner (engine/online); Online.Rate < 0 turns it off.
	Online online.Config
	// ExplainProbes is how many of the newest distinct history items an explained request
	// is measured without, one at a time (default DefaultExplainProbes); older items are not
	// cited.
	ExplainProbes int
	// ExplainEvidence is how explanations find their evidence: EvidenceLeaveOneOut (default:
	// the request run again without each piece, batched: measured, about ExplainProbes+1
	// times the graph work on a CPU) or EvidenceAttention (from the request's own fusion run:
	// no further graph run, but an estimate; see attentionEvidence for how faithful).
	ExplainEvidence string
	// Explain sets the explanations' thresholds (engine/explain.Config).
	Explain explain.Config
	// MaxDecodes bounds how many images and WAVs are decoded at once (default: GOMAXPROCS), so
	// decoding never takes more than the cores; a request waits its turn within its deadline.
	MaxDecodes int
	// MaxDecodeMemory bounds the memory all images and WAVs being decoded at once may allocate
	// (default 512 MiB), each reserving its estimate before it starts (an image's from its
	// header: preprocess.ImageConfig.DecodeBytes; a WAV's as 8 bytes per input byte); a request
	// waits for room within its deadline. Image.MaxDecodeBytes, the most one image may take,
	// is capped to it.
	MaxDecodeMemory int64
	// Observe, when set, is told of every graph run: the graph, its rows, its run time and
	// error (the server's metrics).
	Observe func(graph string, rows int, d time.Duration, err error)
	// ObserveWait, when set, is told how long each request waited in a graph's batch queue.
	ObserveWait func(graph string, d time.Duration)
	// Logger receives load-time information; nil means slog.Default().
	Logger *slog.Logger
}

// Item is one catalog item as served.
type Item struct {
	ID         string   `json:"item_id"`
	Title      string   `json:"title"`
	Categories []string `json:"categories"`
	Text       string   `json:"text,omitempty"`
	// Popularity is the item's interaction count in the training data, when the bundle gives it.
	Popularity float64 `json:"popularity,omitempty"`
}

// Engine serves one bundle. It is safe for concurrent use; Close releases it after in-flight
// requests finish.
type Engine struct {
	cfg      Config
	dir      string
	manifest *bundle.Manifest
	log      *slog.Logger

	sessions map[string]*ort.Session
	text     *batch.Pool
	// textReplicas are the text encoder's sessions after sessions[TextEncoder] (TextReplicas)
	textReplicas []*ort.Session
	image        *batch.Batcher
	audio        *batch.Batcher
	fusion       *batch.Batcher
	gen1         *batch.Batcher // the generator's first step, batched across requests
	tok          *tokenizer.Tokenizer
	imageCfg     preprocess.ImageConfig
	audioFx      *preprocess.AudioFeaturizer

	items   []Item
	byID    map[string]int
	dim     int
	itemEmb []float32 // [N, D], as the model was trained with
	index   retrieval.Index
	cache   *retrieval.EmbeddingCache
	stats   *popularity.Stats
	bias    *online.Learner // nil when online learning is off
	explain *explain.Explainer

	offset, bos int // item token offset, BOS token
	genLayers   int
	genHeads    int
	genHeadDim  int
	maxSteps    int
	decodes     chan struct{}       // a slot per image or WAV being decoded (Config.MaxDecodes)
	decodeMem   *semaphore.Weighted // bytes reserved by decodes in progress (Config.MaxDecodeMemory)
	decodeCost  decodeCost          // how long decodes take per reserved byte (admission by deadline)
	fusionItems bool                // the fusion graph takes history_items (item tokens beside their embeddings)
	steerOut    int                 // index of the fusion's steering output, -1 when it has none
	steerLow    *lowRankSteering    // the catalog's steering terms in the map's rank; nil: the full product
	attOut      int                 // index of the fusion's attention output, -1 when it has none
	similar     *ranking.Similar    // similar-items term; nil when the bundle has none
	diversity   float64             // MMR weight of top-k lists (0: plain top k)
	candidates  int                 // how many of the best items the re-ranking chooses from

	added    atomic.Pointer[addedSet] // items added to the live catalog (added.go); nil: none
	imageMix float64                  // the image's weight in an added item's embedding; 0: text only
	addMu    sync.Mutex               // serialises AddItems
}

// Open validates the bundle in dir, loads its graphs on rt's execution provider, starts the
// batchers and warms every graph up. Partial initialisation is undone on error.
func Open(dir string, rt *ort.Runtime, cfg Config) (e *Engine, err error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.CacheSize == 0 {
		cfg.CacheSize = 4096
	}
	if cfg.MaxHistory <= 0 {
		cfg.MaxHistory = 1000
	}
	if cfg.MaxK <= 0 {
		cfg.MaxK = 100
	}
	switch cfg.ExplainEvidence {
	case "":
		cfg.ExplainEvidence = EvidenceLeaveOneOut
	case EvidenceAttention, EvidenceLeaveOneOut:
	default:
		return nil, fmt.Errorf("recommend: explain evidence %q: want %q or %q", cfg.ExplainEvidence, EvidenceAttention, EvidenceLeaveOneOut)
	}
	if cfg.ExplainProbes <= 0 {
		cfg.ExplainProbes = DefaultExplainProbes
	}
	if cfg.MaxDecodes <= 0 {
		cfg.MaxDecodes = runtime.GOMAXPROCS(0)
	}
	if cfg.MaxDecodeMemory <= 0 {
		cfg.MaxDecodeMemory = 512 << 20
	}
	if cfg.Image.MaxDecodeBytes <= 0 || cfg.Image.MaxDecodeBytes > cfg.MaxDecodeMemory {
		cfg.Image.MaxDecodeBytes = min(preprocess.DefaultMaxImageDecodeBytes, cfg.MaxDecodeMemory)
	}
	m, err := bundle.Validate(dir, rt)
	if err != nil {
		return nil, err
	}
	if probs := bundle.CheckEngineIO(m); len(probs) > 0 {
		return nil, fmt.Errorf("recommend: bundle %s: %s", dir, strings.Join(probs, "; "))
	}
	mix, imageTrained, err := m.ImageMix()
	if err != nil {
		return nil, err
	}
	if cfg.DefaultAlpha == nil {
		a := m.IPS.DefaultAlpha
		cfg.DefaultAlpha = &a
	}
	if cfg.Popularity.Smoothing == 0 {
		cfg.Popularity.Smoothing = m.IPS.Smoothing
	}
	if cfg.Popularity.ClipMin == 0 {
		cfg.Popularity.ClipMin = m.IPS.ClipMin
	}
	e = &Engine{cfg: cfg, dir: dir, manifest: m, log: cfg.Logger, sessions: map[string]*ort.Session{},
		dim: m.EmbeddingDim, offset: m.Items.TokenOffset, bos: m.Items.BOSToken,
		genLayers: m.Generator.Layers, genHeads: m.Generator.Heads, genHeadDim: m.Generator.HeadDim,
		maxSteps: m.Generator.MaxSteps, decodes: make(chan struct{}, cfg.MaxDecodes),
		decodeMem: semaphore.NewWeighted(cfg.MaxDecodeMemory)}
	if imageTrained {
		e.imageMix = mix
	}
	// the engine being built, kept apart from the named result: `return nil, err` sets e to
	// nil before this runs
	built := e
	defer func() {
		if err != nil {
			err = errors.Join(err, built.Close())
			e = nil
		}
	}()
	for _, g := range bundle.RequiredGraphs {
		s, err := rt.NewSession(filepath.Join(dir, m.Graphs[g].File), ort.SessionOptions{Name: g})
		if err != nil {
			return nil, err
		}
		e.sessions[g] = s
	}
	replicas := cfg.TextReplicas
	if replicas <= 0 {
		replicas = 1
		if rt.Provider() == ort.ProviderCPU {
			replicas = min(2, runtime.GOMAXPROCS(0))
		}
	}
	for r := 1; r < replicas; r++ {
		s, err := rt.NewSession(filepath.Join(dir, m.Graphs[bundle.TextEncoder].File), ort.SessionOptions{Name: bundle.TextEncoder})
		if err != nil {
			return nil, err
		}
		e.textReplicas = append(e.textReplicas, s)
	}
	e.steerOut, e.attOut = -1, -1
	for _, in := range e.sessions[bundle.Fusion].Inputs() {
		e.fusionItems = e.fusionItems || in.Name == bundle.InHistoryItems
	}
	for i, out := range e.sessions[bundle.Fusion].Outputs() {
		if out.Name == bundle.OutSteering {
			e.steerOut = i
		}
		if out.Name == bundle.OutAttention {
			e.attOut = i
		}
	}
	e.tok, err = tokenizer.Load(filepath.Join(dir, m.Tokenizer.File), tokenizer.Config{MaxLength: m.Tokenizer.MaxLength, PadID: m.Tokenizer.PadID})
	if err != nil {
		return nil, err
	}
	if e.items, err = ReadItems(filepath.Join(dir, m.Items.File)); err != nil {
		return nil, err
	}
	e.byID = make(map[string]int, len(e.items))
	for i, it := range e.items {
		if _, dup := e.byID[it.ID]; dup {
			return nil, fmt.Errorf("recommend: %s: item id %q appears twice", m.Items.File, it.ID)
		}
		e.byID[it.ID] = i
	}
	if e.itemEmb, err = bundle.ReadFloat32s(filepath.Join(dir, m.Items.Embeddings), len(e.items)*e.dim); err != nil {
		return nil, err
	}
	for i := range e.items {
		// retrieval ranks by cosine and the export by dot product: the same only for unit rows
		if n := math.Sqrt(float64(retrieval.Dot(e.itemEmb[i*e.dim:(i+1)*e.dim], e.itemEmb[i*e.dim:(i+1)*e.dim]))); math.Abs(n-1) > 1e-3 {
			return nil, fmt.Errorf("recommend: %s: row %d has norm %.4f, want unit rows", m.Items.Embeddings, i, n)
		}
	}
	if err := e.loadRanking(); err != nil {
		return nil, err
	}
	if up := m.Fusion.SteeringUp; up != nil && e.steerOut >= 0 {
		// its dtype and shape [embedding_dim, rank] were validated with the manifest
		w, err := bundle.ReadFloat32s(filepath.Join(dir, up.File), e.dim*up.Shape[1])
		if err != nil {
			return nil, err
		}
		if e.steerLow, err = newLowRankSteering(w, e.dim, up.Shape[1], e.itemEmb, len(e.items)); err != nil {
			return nil, err
		}
	}
	// the item embeddings are unit rows (checked above) that never change: the index may read
	// them in place
	if e.index, err = retrieval.NewShared(cfg.Index, e.itemEmb, e.dim); err != nil {
		return nil, err
	}
	e.cache = retrieval.NewEmbeddingCache(cfg.CacheSize)
	live := cfg.Live
	if live == nil {
		live = popularity.NewLive(cfg.Popularity)
	}
	ids := make([]string, len(e.items))
	for i, it := range e.items {
		ids[i] = it.ID
	}
	e.stats = live.Bind(ids, cfg.Popularity)
	for i, it := range e.items {
		e.stats.Seed(i, it.Popularity)
	}
	if cfg.Online.Rate >= 0 {
		e.bias = online.New(len(e.items), e.dim, cfg.Online)
		e.bias.SetFeature(e.stats.TrendFeature)
	}
	if e.explain, err = explain.New(catalogView{e}, e.stats, cfg.Explain); err != nil {
		return nil, err
	}
	img := m.Preprocessing.Image
	e.imageCfg = cfg.Image
	e.imageCfg.Size, e.imageCfg.Mean, e.imageCfg.Std = img.Size, img.Mean, img.Std
	a := m.Preprocessing.Audio
	acfg := cfg.Audio
	acfg.SampleRate, acfg.NFFT, acfg.WinLength, acfg.HopLength, acfg.NMels = a.SampleRate, a.NFFT, a.WinLength, a.HopLength, a.NMels
	acfg.FMin, acfg.FMax, acfg.LogOffset, acfg.MaxSeconds = a.FMin, a.FMax, a.LogOffset, a.MaxSeconds
	if e.audioFx, err = preprocess.NewAudioFeaturizer(acfg); err != nil {
		return nil, err
	}
	batchCfg := func(graph string) batch.Config {
		c := cfg.Batch
		if cfg.ObserveWait != nil {
			c.ObserveWait = func(d time.Duration) { cfg.ObserveWait(graph, d) }
		}
		if cfg.Observe != nil {
			c.Observe = func(rows int, d time.Duration, err error) { cfg.Observe(graph, rows, d, err) }
		}
		return c
	}
	textCfg := batchCfg(bundle.TextEncoder)
	textCfg.Pad = map[string]float64{bundle.InInputIDs: float64(m.Tokenizer.PadID), bundle.InAttentionMask: 0}
	textRunners := []batch.Runner{e.sessions[bundle.TextEncoder]}
	for _, s := range e.textReplicas {
		textRunners = append(textRunners, s)
	}
	if e.text, err = batch.NewPool(textRunners, textCfg); err != nil {
		return nil, err
	}
	e.image = batch.New(e.sessions[bundle.ImageEncoder], batchCfg(bundle.ImageEncoder))
	e.audio = batch.New(e.sessions[bundle.AudioEncoder], batchCfg(bundle.AudioEncoder))
	e.fusion = batch.New(e.sessions[bundle.Fusion], batchCfg(bundle.Fusion))
	e.gen1 = batch.New(NewFirstStep(e.sessions[bundle.Generator], m), batchCfg(bundle.Generator))
	if err := e.warmUp(); err != nil {
		return nil, fmt.Errorf("recommend: warm-up: %w", err)
	}
	e.log.Info("bundle loaded", "dir", dir, "name", m.Name, "version", m.Version, "items", len(e.items),
		"provider", rt.Provider())
	return e, nil
}

// TextReplicas is the number of text encoder sessions serving queries (Config.TextReplicas).
func (e *Engine) TextReplicas() int { return e.text.Replicas() }

// ExplainEvidence is how explanations find their evidence (Config.ExplainEvidence, default
// filled in).
func (e *Engine) ExplainEvidence() string { return e.cfg.ExplainEvidence }

// Manifest is the bundle's manifest.
func (e *Engine) Manifest() *bundle.Manifest { return e.manifest }

// Items is the bundle's catalog in vocabulary order (without added items: see Item and
// Added); callers must not modify it.
func (e *Engine) Items() []Item { return e.items }

// SteeringRank is the rank in which the catalog's steering terms are taken (the bundle's
// fusion.steering_up), 0 when they are the full product with the item embeddings.
func (e *Engine) SteeringRank() int {
	if e.steerLow == nil {
		return 0
	}
	return e.steerLow.rank
}

// Row is an item id's row: the bundle's catalog (rows below len(Items())), then the items
// added since it was loaded (AddItems).
func (e *Engine) Row(id string) (int, bool) {
	if r, ok := e.byID[id]; ok {
		return r, true
	}
	if a := e.added.Load(); a != nil {
		if j, ok := a.byID[id]; ok {
			return len(e.items) + j, true
		}
	}
	return 0, false
}

// Stats are the live item statistics (popularity, trending, co-occurrence) the engine
// reweights and explains with, by catalog row: a view of Config.Live seeded with the
// bundle's training interactions.
func (e *Engine) Stats() *popularity.Stats { return e.stats }

// Learner is the online-learned correction of the generator's output layer (per-item bias and
// residual over the fused user state), nil when online learning is off.
func (e *Engine) Learner() *online.Learner { return e.bias }

// Index is the retrieval index over the item embeddings (Config.Index).
func (e *Engine) Index() retrieval.Index { return e.index }

// Cache is the embedding cache of query texts, images and audio.
func (e *Engine) Cache() *retrieval.EmbeddingCache { return e.cache }

// QueueDepths reports each batcher's queue length.
func (e *Engine) QueueDepths() map[string]int {
	return map[string]int{bundle.TextEncoder: e.text.QueueDepth(), bundle.ImageEncoder: e.image.QueueDepth(),
		bundle.AudioEncoder: e.audio.QueueDepth(), bundle.Fusion: e.fusion.QueueDepth(), bundle.Generator: e.gen1.QueueDepth()}
}

// Close stops the batchers (running what they accepted) and releases the graphs and the
// tokenizer. It is idempotent.
func (e *Engine) Close() error {
	var errs []error
	if e.text != nil {
		errs = append(errs, e.text.Close())
	}
	for _, b := range []*batch.Batcher{e.image, e.audio, e.fusion, e.gen1} {
		if b != nil {
			errs = append(errs, b.Close())
		}
	}
	for _, s := range e.sessions {
		errs = append(errs, s.Close())
	}
	for _, s := range e.textReplicas {
		errs = append(errs, s.Close())
	}
	if e.tok != nil {
		errs = append(errs, e.tok.Close())
	}
	return errors.Join(errs...)
}

// ReadItems reads a catalog in the items.jsonl format (item_id as a string or a number) with
// bundle.ReadItems, the one reader of that format.
func ReadItems(path string) ([]Item, error) {
	its, err := bundle.ReadItems(path)
	if err != nil {
		return nil, err
	}
	items := make([]Item, len(its))
	for i, it := range its {
		items[i] = Item(it)
	}
	return items, nil
}

// ParseItemID accepts an item id written as a JSON string or number (bundle.ParseItemID).
func ParseItemID(raw json.RawMessage) (string, error) { return bundle.ParseItemID(raw) }

// loadRanking reads the manifest's ranking section (bundles without one rank by logits plus
// steering, plain top k).
func (e *Engine) loadRanking() error {
	r := e.manifest.Ranking
	if r == nil {
		return nil
	}
	d := r.Diversity
	if math.IsNaN(d.Weight) || math.IsInf(d.Weight, 0) || d.Weight < 0 || (d.Weight > 0 && d.Candidates <= 0) {
		return fmt.Errorf("recommend: manifest ranking.diversity: weight %v with %d candidates: want a weight >= 0 and candidates > 0", d.Weight, d.Candidates)
	}
	e.diversity, e.candidates = d.Weight, d.Candidates
	s := r.SimilarItems
	if s == nil {
		return nil
	}
	n := len(e.items)
	for _, a := range []struct {
		spec  bundle.ArraySpec
		dtype string
	}{{s.Rows, "int32"}, {s.Weights, "float32"}} {
		if a.spec.DType != a.dtype || len(a.spec.Shape) != 2 || a.spec.Shape[0] != n || a.spec.Shape[1] < 0 {
			return fmt.Errorf("recommend: manifest ranking.similar_items: %s is %s %v, want %s [%d, neighbours]", a.spec.File, a.spec.DType, a.spec.Shape, a.dtype, n)
		}
	}
	k := s.Rows.Shape[1]
	if s.Weights.Shape[1] != k {
		return fmt.Errorf("recommend: manifest ranking.similar_items: rows have %d neighbours, weights %d", k, s.Weights.Shape[1])
	}
	rows, err := bundle.ReadInt32s(filepath.Join(e.dir, s.Rows.File), n*k)
	if err != nil {
		return err
	}
	w, err := bundle.ReadFloat32s(filepath.Join(e.dir, s.Weights.File), n*k)
	if err != nil {
		return err
	}
	e.similar, err = ranking.NewSimilar(rows, w, n, k, s.Weight, s.Decay, s.MaxHistory)
	return err
}

// catalogView adapts the engine to explain.Catalog.
type catalogView struct{ e *Engine }

func (c catalogView) Item(row int) explain.Item {
	it, _ := c.e.Item(row)
	return explain.Item{ID: it.ID, Title: it.Title, Categories: it.Categories}
}

// Similarity is the cosine of two items' content embeddings (unit rows, catalog or added).
func (c catalogView) Similarity(a, b int) float32 {
	return retrieval.Dot(c.e.emb(a), c.e.emb(b))
}

// warmUp runs every graph once so that the first request does not pay for lazy allocation.
func (e *Engine) warmUp() error {
	start := time.Now()
	ctx := context.Background()
	if _, err := e.embedTexts(ctx, []string{"warm up"}); err != nil {
		return err
	}
	// the text encoder's other replicas, which a lone caller never reaches
	in, _, err := e.textInputs([]string{"warm up"})
	if err != nil {
		return err
	}
	for _, s := range e.textReplicas {
		if _, err := s.Run(in); err != nil {
			return err
		}
	}
	px := make([]float32, 3*e.imageCfg.Size*e.imageCfg.Size)
	if _, err := e.image.Submit(ctx, []ort.Tensor{{Name: bundle.InPixels, Shape: []int64{1, 3, int64(e.imageCfg.Size), int64(e.imageCfg.Size)}, Float32: px}}); err != nil {
		return err
	}
	nm := int64(e.manifest.Preprocessing.Audio.NMels)
	if _, err := e.audio.Submit(ctx, []ort.Tensor{{Name: bundle.InLogMel, Shape: []int64{1, 4, nm}, Float32: make([]float32, 4*nm)},
		{Name: bundle.InLengths, Shape: []int64{1}, Int64: []int64{4}}}); err != nil {
		return err
	}
	if _, err := e.Recommend(ctx, Request{History: []string{e.items[0].ID}, K: 1}); err != nil {
		return err
	}
	e.log.Debug("warm-up done", "took", time.Since(start))
	return nil
}

// NewFirstStep wraps a bundle's generator session as the batcher's runner for the first
// decoding step (see firstStep).
func NewFirstStep(s *ort.Session, m *bundle.Manifest) batch.Runner {
	return firstStep{s: s, layers: int64(m.Generator.Layers), heads: int64(m.Generator.Heads), headDim: int64(m.Generator.HeadDim)}
}

// firstStep presents the generator's first decoding step to the batcher: inputs user_state
// [B,D] and tokens [B,1] with the batch on axis 0; the empty key-value cache ([N,B,H,0,Dh],
// batch on axis 1) is added per batch, and only the logits come back. Later steps of a slate
// carry a cache and run per request.
type firstStep struct {
	s                      *ort.Session
	layers, heads, headDim int64
}

func (f firstStep) Inputs() []ort.TensorInfo {
	var out []ort.TensorInfo
	for _, in := range f.s.Inputs() {
		if in.Name == bundle.InUserState || in.Name == bundle.InTokens {
			out = append(out, in)
		}
	}
	return out
}

// RunView is Run lending the logits (batch.ViewRunner): the batcher copies each request's rows
// out of the session's kept output, and a warm step allocates nothing.
func (f firstStep) RunView(in []ort.Tensor, use func([]ort.Tensor) error) error {
	var all [4]ort.Tensor
	n := copy(all[:2], in)
	shape := [5]int64{f.layers, in[0].Shape[0], f.heads, 0, f.headDim}
	all[n] = ort.Tensor{Name: bundle.InPastKeys, Shape: shape[:], Float32: []float32{}}
	all[n+1] = ort.Tensor{Name: bundle.InPastValues, Shape: shape[:], Float32: []float32{}}
	return f.s.RunView(all[:n+2], func(out []ort.Tensor) error { return use(out[:1]) })
}

func (f firstStep) Run(in []ort.Tensor) ([]ort.Tensor, error) {
	var out []ort.Tensor
	err := f.RunView(in, func(lent []ort.Tensor) error {
		out = ort.CopyTensors(lent)
		return nil
	})
	return out, err
}
