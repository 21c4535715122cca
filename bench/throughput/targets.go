package throughput

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/bench/synth"
	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/engine/tokenizer"
)

// Realistic sample sizes of the bundle cases.
const (
	// AudioFrames is the log-mel frames of one audio sample (3 s at the default recipe).
	AudioFrames = 300
	// PipelineHistory is the history length of a pipeline request (the default bundle's
	// fusion.max_history).
	PipelineHistory = 50
	// defaultSymbolic is the size given to a symbolic non-batch dimension of a lone graph.
	defaultSymbolic = 16
)

// rawPath runs one prebuilt batch per call.
func rawPath(s *ort.Session, build func(b int) ([]ort.Tensor, error)) preparer {
	return func(b int) (*pointRun, error) {
		in, err := build(b)
		if err != nil {
			return nil, err
		}
		return &pointRun{workers: 1, perCall: b, call: func(int) error {
			_, err := s.Run(in)
			return err
		}}, nil
	}
}

// batcherPath has b callers each submit its own one-sample request through a batcher over s.
func batcherPath(s batch.Runner, cfg batch.Config, sample func(worker int) ([]ort.Tensor, error)) preparer {
	return func(b int) (*pointRun, error) {
		ins := make([][]ort.Tensor, b)
		for w := range ins {
			in, err := sample(w)
			if err != nil {
				return nil, err
			}
			ins[w] = in
		}
		var c counters
		bc := cfg
		bc.MaxBatch = b
		bc.QueueSize = max(bc.QueueSize, 2*b)
		bc.Observe = func(rows int, _ time.Duration, _ error) { c.observe(rows) }
		bt := batch.New(s, bc)
		ctx := context.Background()
		return &pointRun{workers: b, perCall: 1, rows: c.get, close: bt.Close, call: func(w int) error {
			_, err := bt.Submit(ctx, ins[w])
			return err
		}}, nil
	}
}

// tensorFor makes a tensor of the given full shape: float32 data from fill, or int64 data
// set to ival.
func tensorFor(info ort.TensorInfo, shape []int64, rng *rand.Rand, ival int64) (ort.Tensor, error) {
	n := int64(1)
	for _, d := range shape {
		n *= d
	}
	t := ort.Tensor{Name: info.Name, Shape: shape}
	switch info.DType {
	case ort.Float32:
		t.Float32 = make([]float32, n)
		fill := func(i int) float32 { return float32(rng.NormFloat64()) }
		if strings.Contains(info.Name, "mask") {
			fill = func(int) float32 { return 1 }
		}
		for i := range t.Float32 {
			t.Float32[i] = fill(i)
		}
	case ort.Int64:
		t.Int64 = make([]int64, n)
		for i := range t.Int64 {
			t.Int64[i] = ival
		}
	default:
		return t, fmt.Errorf("bench: input %s has an element type the engine does not exchange", info)
	}
	return t, nil
}

// graphRig measures one .onnx file: raw and batcher paths, inputs synthesised from its I/O.
type graphRig struct {
	cfg  Config
	name string
	sess *ort.Session
	desc string
}

func newGraphRig(cfg Config, rt *ort.Runtime) (*graphRig, error) {
	name := strings.TrimSuffix(filepath.Base(cfg.Graph), filepath.Ext(cfg.Graph))
	s, err := rt.NewSession(cfg.Graph, ort.SessionOptions{Name: name})
	if err != nil {
		return nil, err
	}
	g := &graphRig{cfg: cfg, name: name, sess: s}
	var parts []string
	for _, in := range s.Inputs() {
		shape, err := g.shape(in, 1)
		if err != nil {
			return nil, errors.Join(err, s.Close())
		}
		parts = append(parts, fmt.Sprintf("%s %s%v", in.Name, in.DType, shape[1:]))
	}
	g.desc = strings.Join(parts, ", ")
	return g, nil
}

// shape is the full shape of input in for batch b.
func (g *graphRig) shape(in ort.TensorInfo, b int) ([]int64, error) {
	if len(in.Shape) == 0 {
		return nil, fmt.Errorf("bench: %s: input %s is a scalar; dimension 0 must be the batch", g.name, in)
	}
	if in.Shape[0] >= 0 && in.Shape[0] != int64(b) {
		return nil, fmt.Errorf("bench: %s: input %s has a fixed dimension 0; it must be the batch", g.name, in)
	}
	shape := []int64{int64(b)}
	given, ok := g.cfg.Shapes[in.Name]
	if ok && len(given) != len(in.Shape)-1 {
		return nil, fmt.Errorf("bench: %s: shape %v given for input %s, which has rank %d", g.name, given, in, len(in.Shape))
	}
	for d, v := range in.Shape[1:] {
		switch {
		case ok:
			shape = append(shape, given[d])
		case v >= 0:
			shape = append(shape, v)
		default:
			shape = append(shape, defaultSymbolic)
		}
	}
	return shape, nil
}

func (g *graphRig) build(b int, seed uint64) ([]ort.Tensor, error) {
	rng := rand.New(rand.NewPCG(g.cfg.Seed, seed))
	var out []ort.Tensor
	for _, in := range g.sess.Inputs() {
		shape, err := g.shape(in, b)
		if err != nil {
			return nil, err
		}
		t, err := tensorFor(in, shape, rng, 1)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func (g *graphRig) targets() []target {
	return []target{{name: g.name, paths: map[Path]preparer{
		PathRaw:     rawPath(g.sess, func(b int) ([]ort.Tensor, error) { return g.build(b, 0) }),
		PathBatcher: batcherPath(g.sess, g.cfg.Batch, func(w int) ([]ort.Tensor, error) { return g.build(1, uint64(w)+1) }),
	}}}
}

func (g *graphRig) inputs() map[string]string { return map[string]string{g.name: g.desc} }
func (g *graphRig) notes() map[string]string  { return nil }
func (g *graphRig) Close() error              { return g.sess.Close() }

// bundleRig measures a bundle's five graphs and its pipeline on one runtime.
type bundleRig struct {
	cfg  Config
	dir  string
	m    *bundle.Manifest
	sess map[string]*ort.Session
	tok  *tokenizer.Tokenizer
	eng  *recommend.Engine // nil unless the engine path is measured
	obs  map[string]*counters
	ids  []string // catalog item ids
	tag  atomic.Uint64

	textDesc string
	jpeg     []byte // the engine path's image upload
	wav      []byte // the engine path's audio upload
}

func newBundleRig(cfg Config, rt *ort.Runtime) (r *bundleRig, err error) {
	m, err := bundle.ReadManifest(cfg.Bundle)
	if err != nil {
		return nil, err
	}
	r = &bundleRig{cfg: cfg, dir: cfg.Bundle, m: m, sess: map[string]*ort.Session{}, obs: map[string]*counters{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, r.Close())
			r = nil
		}
	}()
	for _, g := range bundle.RequiredGraphs {
		spec, ok := m.Graphs[g]
		if !ok {
			return nil, fmt.Errorf("bench: bundle %s has no graph %s", cfg.Bundle, g)
		}
		s, err := rt.NewSession(filepath.Join(cfg.Bundle, spec.File), ort.SessionOptions{Name: g})
		if err != nil {
			return nil, err
		}
		r.sess[g] = s
		r.obs[g] = &counters{}
	}
	r.tok, err = tokenizer.Load(filepath.Join(cfg.Bundle, m.Tokenizer.File), tokenizer.Config{MaxLength: m.Tokenizer.MaxLength, PadID: m.Tokenizer.PadID})
	if err != nil {
		return nil, err
	}
	if slices.Contains(cfg.Paths, PathEngine) {
		bc := cfg.Batch
		bc.MaxBatch = max(bc.MaxBatch, 64, slices.Max(cfg.Batches))
		bc.QueueSize = max(bc.QueueSize, 1024, 2*slices.Max(cfg.Batches))
		r.eng, err = recommend.Open(cfg.Bundle, rt, recommend.Config{Batch: bc, Logger: cfg.Logger,
			Observe: func(graph string, rows int, _ time.Duration, _ error) {
				if c := r.obs[graph]; c != nil {
					c.observe(rows)
				}
			}})
		if err != nil {
			return nil, err
		}
		for _, it := range r.eng.Items() {
			r.ids = append(r.ids, it.ID)
		}
	}
	if len(r.ids) == 0 {
		items, err := bundle.ReadItems(filepath.Join(cfg.Bundle, m.Items.File))
		if err != nil {
			return nil, err
		}
		for _, it := range items {
			r.ids = append(r.ids, it.ID)
		}
	}
	if len(r.ids) == 0 {
		return nil, fmt.Errorf("bench: bundle %s has an empty catalog", cfg.Bundle)
	}
	probe, err := r.tok.EncodeBatch([]string{synth.RandomText(rand.New(rand.NewPCG(cfg.Seed, 0)), synth.TextWords)})
	if err != nil {
		return nil, err
	}
	r.textDesc = fmt.Sprintf("%d words, %d tokens", synth.TextWords, probe.Len)
	img := synth.Image(256, 384, cfg.Seed)
	r.jpeg = synth.EncodeJPEG(img)
	a := m.Preprocessing.Audio
	r.wav = synth.WAV(a.WinLength+(AudioFrames-1)*a.HopLength, a.SampleRate, cfg.Seed)
	return r, nil
}

func (r *bundleRig) Close() error {
	var errs []error
	if r.eng != nil {
		errs = append(errs, r.eng.Close())
	}
	for _, s := range r.sess {
		errs = append(errs, s.Close())
	}
	if r.tok != nil {
		errs = append(errs, r.tok.Close())
	}
	return errors.Join(errs...)
}

func (r *bundleRig) inputs() map[string]string {
	m := r.m
	img := m.Preprocessing.Image.Size
	return map[string]string{
		bundle.TextEncoder: "query text of " + r.textDesc,
		bundle.ImageEncoder: fmt.Sprintf("3x%dx%d pixels (engine: a 256x384 JPEG of %d bytes, decoded, resized and cropped)",
			img, img, len(r.jpeg)),
		bundle.AudioEncoder: fmt.Sprintf("%d frames x %d log-mel (engine: a %.2f s %d Hz mono WAV)", AudioFrames,
			m.Preprocessing.Audio.NMels, float64(len(r.wav)-44)/2/float64(m.Preprocessing.Audio.SampleRate), m.Preprocessing.Audio.SampleRate),
		bundle.Fusion: fmt.Sprintf("%d history items, %d modalities, %d context items, D=%d", m.Fusion.MaxHistory,
			len(m.Fusion.Modalities), m.Fusion.MaxContext, m.EmbeddingDim),
		bundle.Generator: fmt.Sprintf("first step from BOS (%d layers, %d heads), %d logits", m.Generator.Layers,
			m.Generator.Heads, m.Items.Count+m.Items.TokenOffset),
		CasePipeline: fmt.Sprintf("history of %d items, k=10 (raw: fusion then the generator's first step)", PipelineHistory),
	}
}

func (r *bundleRig) notes() map[string]string {
	return map[string]string{
		bundle.Generator: "batcher path: the engine's first-step runner (empty key-value cache added per batch), B callers with one row each",
		bundle.Fusion:    "no engine path of its own: the engine reaches fusion only through Recommend (see pipeline)",
		CasePipeline:     "no batcher path: the pipeline is two graphs; engine path is recommend.Engine.Recommend (retrieval, IPS and ranking included)",
	}
}

// input makes the named graph's inputs for batch b; seed varies the data.
func (r *bundleRig) input(graph string, b int, seed uint64) ([]ort.Tensor, error) {
	m := r.m
	rng := rand.New(rand.NewPCG(r.cfg.Seed, seed))
	B, D := int64(b), int64(m.EmbeddingDim)
	if graph == bundle.TextEncoder {
		texts := make([]string, b)
		for i := range texts {
			texts[i] = synth.RandomText(rng, synth.TextWords)
		}
		enc, err := r.tok.EncodeBatch(texts)
		if err != nil {
			return nil, err
		}
		shape := []int64{B, int64(enc.Len)}
		return []ort.Tensor{{Name: "input_ids", Shape: shape, Int64: enc.InputIDs},
			{Name: "attention_mask", Shape: shape, Int64: enc.AttentionMask}}, nil
	}
	S := int64(m.Preprocessing.Image.Size)
	L, M, R := int64(m.Fusion.MaxHistory), int64(len(m.Fusion.Modalities)), int64(m.Fusion.MaxContext)
	N, H, Dh := int64(m.Generator.Layers), int64(m.Generator.Heads), int64(m.Generator.HeadDim)
	shapes := map[string][]int64{
		"pixels":  {B, 3, S, S},
		"log_mel": {B, AudioFrames, int64(m.Preprocessing.Audio.NMels)}, "lengths": {B},
		bundle.InHistoryItems: {B, L}, "history": {B, L, D}, "history_mask": {B, L}, "modalities": {B, M, D}, "modality_mask": {B, M},
		"context": {B, R, D}, "context_mask": {B, R},
		"user_state": {B, D}, "tokens": {B, 1}, "past_keys": {N, B, H, 0, Dh}, "past_values": {N, B, H, 0, Dh},
	}
	ivals := map[string]int64{"lengths": AudioFrames, "tokens": int64(m.Items.BOSToken), bundle.InHistoryItems: int64(m.Items.TokenOffset)}
	var out []ort.Tensor
	for _, info := range r.sess[graph].Inputs() {
		shape, ok := shapes[info.Name]
		if !ok {
			return nil, fmt.Errorf("bench: %s: input %s is not one docs/BUNDLE.md describes", graph, info)
		}
		t, err := tensorFor(info, shape, rng, ivals[info.Name])
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

func (r *bundleRig) targets() []target {
	ctx := context.Background()
	raw := func(g string) preparer {
		return rawPath(r.sess[g], func(b int) ([]ort.Tensor, error) { return r.input(g, b, 0) })
	}
	batcher := func(g string) preparer {
		bc := r.cfg.Batch
		if g == bundle.TextEncoder {
			bc.Pad = map[string]float64{"input_ids": float64(r.m.Tokenizer.PadID)}
		}
		return batcherPath(r.sess[g], bc, func(w int) ([]ort.Tensor, error) { return r.input(g, 1, uint64(w)+1) })
	}
	// engine paths: each call is one caller's request with fresh content, so that the
	// engine's embedding cache never answers it
	concurrent := func(graph string, call func(rng *rand.Rand) error) preparer {
		return func(b int) (*pointRun, error) {
			rngs := make([]*rand.Rand, b)
			for w := range rngs {
				rngs[w] = rand.New(rand.NewPCG(r.cfg.Seed, r.tag.Add(1)))
			}
			var rows func() (int64, int64)
			if c := r.obs[graph]; c != nil {
				rows = c.get
			}
			return &pointRun{workers: b, perCall: 1, rows: rows, call: func(w int) error { return call(rngs[w]) }}, nil
		}
	}
	ts := []target{
		{name: bundle.TextEncoder, paths: map[Path]preparer{PathRaw: raw(bundle.TextEncoder), PathBatcher: batcher(bundle.TextEncoder)}},
		{name: bundle.ImageEncoder, paths: map[Path]preparer{PathRaw: raw(bundle.ImageEncoder), PathBatcher: batcher(bundle.ImageEncoder)}},
		{name: bundle.AudioEncoder, paths: map[Path]preparer{PathRaw: raw(bundle.AudioEncoder), PathBatcher: batcher(bundle.AudioEncoder)}},
		{name: bundle.Fusion, paths: map[Path]preparer{PathRaw: raw(bundle.Fusion), PathBatcher: batcher(bundle.Fusion)}},
		{name: bundle.Generator, paths: map[Path]preparer{PathRaw: raw(bundle.Generator),
			// the engine batches the first step across requests (recommend.NewFirstStep)
			PathBatcher: batcherPath(recommend.NewFirstStep(r.sess[bundle.Generator], r.m), r.cfg.Batch,
				func(w int) ([]ort.Tensor, error) {
					in, err := r.input(bundle.Generator, 1, uint64(w)+1)
					if err != nil {
						return nil, err
					}
					var keep []ort.Tensor // user_state, tokens; the runner adds the empty cache
					for _, t := range in {
						if t.Name == "user_state" || t.Name == "tokens" {
							keep = append(keep, t)
						}
					}
					return keep, nil
				})}},
		{name: CasePipeline, paths: map[Path]preparer{PathRaw: r.rawPipeline()}},
	}
	if e := r.eng; e != nil {
		ts[0].paths[PathEngine] = concurrent(bundle.TextEncoder, func(rng *rand.Rand) error {
			_, err := e.EmbedQuery(ctx, synth.RandomText(rng, synth.TextWords))
			return err
		})
		ts[1].paths[PathEngine] = concurrent(bundle.ImageEncoder, func(rng *rand.Rand) error {
			_, err := e.EmbedImage(ctx, synth.UniqueMedia(r.jpeg, r.tag.Add(1)))
			return err
		})
		ts[2].paths[PathEngine] = concurrent(bundle.AudioEncoder, func(rng *rand.Rand) error {
			_, err := e.EmbedAudio(ctx, synth.UniqueMedia(r.wav, r.tag.Add(1)))
			return err
		})
		ts[5].paths[PathEngine] = concurrent(bundle.Fusion, func(rng *rand.Rand) error {
			hist := make([]string, PipelineHistory)
			for i := range hist {
				hist[i] = r.ids[rng.IntN(len(r.ids))]
			}
			_, err := e.Recommend(ctx, recommend.Request{History: hist, K: 10, ExcludeSeen: true})
			return err
		})
	}
	return ts
}

// rawPipeline runs fusion on a prebuilt batch and the generator's first step on its output.
func (r *bundleRig) rawPipeline() preparer {
	return func(b int) (*pointRun, error) {
		fin, err := r.input(bundle.Fusion, b, 0)
		if err != nil {
			return nil, err
		}
		gin, err := r.input(bundle.Generator, b, 0)
		if err != nil {
			return nil, err
		}
		us := slices.IndexFunc(gin, func(t ort.Tensor) bool { return t.Name == "user_state" })
		if us < 0 {
			return nil, errors.New("bench: generator has no user_state input")
		}
		fs, gs := r.sess[bundle.Fusion], r.sess[bundle.Generator]
		return &pointRun{workers: 1, perCall: b, call: func(int) error {
			out, err := fs.Run(fin)
			if err != nil {
				return err
			}
			in := slices.Clone(gin)
			in[us].Float32 = out[0].Float32
			_, err = gs.Run(in)
			return err
		}}, nil
	}
}
