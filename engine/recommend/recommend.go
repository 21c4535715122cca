package recommend

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/bundle"
	"github.com/llm4rec/llm4rec/engine/explain"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/ranking"
	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// ErrRequest is wrapped by every error caused by the request itself (unknown item, limits,
// undecodable media); the server answers them with 400 or 413.
var ErrRequest = errors.New("recommend: bad request")

// Mode selects how the generator produces the list.
type Mode string

const (
	// ModeTopK ranks every item by the generator's first step (one graph run).
	ModeTopK Mode = "topk"
	// ModeSlate decodes k steps, each conditioned on the items chosen before it.
	ModeSlate Mode = "slate"
)

// Request is one recommendation request, already decoded from its wire format.
type Request struct {
	// History is the user's item ids, oldest first.
	History []string
	// Query, Image (JPEG/PNG bytes) and Audio (WAV bytes) are optional modalities.
	Query string
	Image []byte
	Audio []byte
	// K is how many items to return (default 10, at most Config.MaxK).
	K int
	// ExcludeSeen drops the history's items from the list.
	ExcludeSeen bool
	// Alpha is the IPS strength; nil uses the configured default, 0 turns reweighting off.
	Alpha *float64
	// Explain attaches one explanation to every item, ExplainDetail up to three; both are
	// built from evidence the engine measures by leaving out, in turn, each of the newest
	// Config.ExplainProbes history items and each modality the request sent (one fusion and
	// generator run each, batched).
	Explain       bool
	ExplainDetail bool
	// Mode is ModeTopK (default) or ModeSlate.
	Mode Mode
}

// Recommendation is one ranked item.
type Recommendation struct {
	ItemID     string   `json:"item_id"`
	Title      string   `json:"title"`
	Categories []string `json:"categories,omitempty"`
	// LogProb is the model's log-probability of the item (over valid items): the generator's
	// logits plus, when the request sent a query, image or audio, the steering term, plus the
	// bundle's similar-items term of the history when it has one.
	LogProb float32 `json:"log_prob"`
	// Score is LogProb after IPS reweighting; the list is sorted by it.
	Score        float32               `json:"score"`
	Explanations []explain.Explanation `json:"explanations,omitempty"`
}

// Response is a ranked list with what produced it.
type Response struct {
	Items   []Recommendation `json:"items"`
	Alpha   float64          `json:"ips_alpha"`
	Mode    Mode             `json:"mode"`
	Context []string         `json:"context_items"` // retrieved item ids handed to fusion
	Timings Timings          `json:"timings_us"`
}

// Timings are each stage's wall time in microseconds.
type Timings struct {
	Encode   int64 `json:"encode"`
	Retrieve int64 `json:"retrieve"`
	Fusion   int64 `json:"fusion"`
	Generate int64 `json:"generate"`
	Rank     int64 `json:"rank"`
	Explain  int64 `json:"explain"`
}

// Modality names in the order the fusion graph's `modalities` input expects is the manifest's.
const (
	modText  = "text"
	modImage = "image"
	modAudio = "audio"
)

// LogProbs is the served log-probability of every item (catalog order) as the next one after
// history (item ids, oldest first): fusion without modalities, the generator's first step,
// plus the bundle's similar-items term of the history when it has one (what Recommend adds
// to the logits without a request); no online correction, no IPS. Evaluations use it:
// Engine.TopK of it plus the learner's correction (Learner().Add with the user state of
// LearnerInputs) is Recommend's top-k list without IPS.
func (e *Engine) LogProbs(ctx context.Context, history []string) ([]float32, error) {
	_, lp, err := e.LearnerInputs(ctx, history)
	return lp, err
}

// LearnerInputs is what the online learner takes for a history (item ids, oldest first; ids
// outside the catalog are skipped): the fusion's user state without modalities and LogProbs.
func (e *Engine) LearnerInputs(ctx context.Context, history []string) (state, logProbs []float32, err error) {
	hist := make([]int, 0, len(history))
	for _, id := range history {
		if r, ok := e.byID[id]; ok {
			hist = append(hist, r)
		}
	}
	inputs, _ := e.fusionInputs(hist, modalities{emb: make([][]float32, len(e.manifest.Fusion.Modalities)), names: e.manifest.Fusion.Modalities}, nil)
	out, err := e.fusion.Submit(ctx, inputs)
	if err != nil {
		return nil, nil, err
	}
	state = out[0].Float32
	logits, err := e.firstStepLogits(ctx, state, nil)
	if err != nil {
		return nil, nil, err
	}
	if terms := e.requestTerms(nil, hist); terms != nil {
		e.addTerms(logits, terms)
	}
	lp := make([]float32, len(e.items))
	e.logProbs(logits, lp)
	return state, lp, nil
}

// Recommend runs the pipeline for one request.
func (e *Engine) Recommend(ctx context.Context, req Request) (*Response, error) {
	k := req.K
	if k == 0 {
		k = 10
	}
	if k < 0 || k > e.cfg.MaxK {
		return nil, fmt.Errorf("%w: k %d: must be 1 to %d", ErrRequest, k, e.cfg.MaxK)
	}
	if len(req.History) > e.cfg.MaxHistory {
		return nil, fmt.Errorf("%w: history of %d items exceeds the limit of %d", ErrRequest, len(req.History), e.cfg.MaxHistory)
	}
	mode := req.Mode
	switch mode {
	case "":
		mode = ModeTopK
	case ModeTopK, ModeSlate:
	default:
		return nil, fmt.Errorf("%w: mode %q: want topk or slate", ErrRequest, req.Mode)
	}
	if mode == ModeSlate && k > e.maxSteps {
		return nil, fmt.Errorf("%w: slate of %d items exceeds the generator's %d steps", ErrRequest, k, e.maxSteps)
	}
	alpha := *e.cfg.DefaultAlpha
	if req.Alpha != nil {
		alpha = *req.Alpha
	}
	if math.IsNaN(alpha) || math.IsInf(alpha, 0) || alpha < 0 || alpha > bundle.MaxAlpha {
		return nil, fmt.Errorf("%w: ips alpha %v: must be within [0, %g]", ErrRequest, alpha, bundle.MaxAlpha)
	}
	added := e.added.Load() // the additions this request ranks with (rows stay valid)
	sc := scratches.Get().(*scratch)
	defer scratches.Put(sc)
	hist := sc.hist[:0]
	for _, id := range req.History {
		r, ok := e.Row(id)
		if !ok {
			return nil, fmt.Errorf("%w: unknown item id %q in history", ErrRequest, id)
		}
		hist = append(hist, r)
	}
	sc.hist = hist
	if dl, ok := ctx.Deadline(); ok {
		// admission: a request that cannot finish within its deadline at the current queues is
		// refused now, not answered 504 after taking its share of the graphs
		wait := e.expectedWait(req)
		if left := time.Until(dl); wait > 0 && left < wait {
			return nil, fmt.Errorf("%w: about %s expected through the graphs, %s left", batch.ErrWouldMissDeadline, wait.Round(time.Millisecond), left.Round(time.Millisecond))
		}
		// admitted once: the graphs do not refuse it halfway; it finishes or meets its deadline
		ctx = batch.Admitted(ctx)
	}
	resp := &Response{Alpha: alpha, Mode: mode}
	t0 := time.Now()

	// 1. modalities
	mods, err := e.encodeModalities(ctx, req, sc)
	if err != nil {
		return nil, err
	}
	t1 := time.Now()
	resp.Timings.Encode = t1.Sub(t0).Microseconds()

	// 2. fusion inputs with retrieved context
	inputs, ctxRows := e.fusionInputs(hist, mods, &sc.fusion)
	if len(ctxRows) > 0 {
		resp.Context = make([]string, 0, len(ctxRows))
	}
	for _, r := range ctxRows {
		resp.Context = append(resp.Context, e.items[r].ID) // retrieval returns catalog rows
	}
	t2 := time.Now()
	resp.Timings.Retrieve = t2.Sub(t1).Microseconds()

	out, err := e.fusion.SubmitInto(ctx, inputs, &sc.fusionOut)
	if err != nil {
		return nil, err
	}
	userState := out[0].Float32
	terms, steerTerms := e.requestTermsAndSteering(out, hist, sc)
	t3 := time.Now()
	resp.Timings.Fusion = t3.Sub(t2).Microseconds()

	// 3. generation
	steer := e.steerVec(out)
	var excluded []int // the rows never recommended, marked in seen
	if req.ExcludeSeen {
		excluded = hist
	}
	seenBuf := takeMarks(len(e.items)+added.len(), excluded)
	defer putMarks(seenBuf, excluded)
	seen := seenBuf.marks
	var picks []pick
	var firstLogits []float32 // the first step's logits with the terms (explanations)
	if mode == ModeTopK {
		logits, err := e.firstStepLogits(ctx, userState, sc)
		if err != nil {
			return nil, err
		}
		t4 := time.Now()
		resp.Timings.Generate = t4.Sub(t3).Microseconds()
		e.addTerms(logits, terms)
		firstLogits = logits
		picks = e.rankTopK(rankExtra{added, terms, steer}, logits, userState, seen, alpha, k, true, sc)
		resp.Timings.Rank = time.Since(t4).Microseconds()
	} else {
		picks, err = e.decodeSlate(ctx, userState, rankExtra{added, terms, steer}, seen, alpha, k, sc)
		if err != nil {
			return nil, err
		}
		resp.Timings.Generate = time.Since(t3).Microseconds()
	}

	// 4. explanations, from evidence measured by leaving each piece out
	t5 := time.Now()
	resp.Items = make([]Recommendation, len(picks))
	for i, p := range picks {
		it, _ := e.Item(p.row)
		resp.Items[i] = Recommendation{ItemID: it.ID, Title: it.Title, Categories: it.Categories, LogProb: p.logProb, Score: p.score}
	}
	if req.Explain || req.ExplainDetail {
		if firstLogits == nil {
			if firstLogits, err = e.firstStepLogits(ctx, userState, sc); err != nil {
				return nil, err
			}
			e.addTerms(firstLogits, terms)
		}
		var ev [][]explain.Evidence
		if e.cfg.ExplainEvidence == EvidenceLeaveOneOut || e.attOut < 0 {
			full, extra := e.servedParts(firstLogits, userState, alpha)
			if ev, err = e.evidence(ctx, hist, mods, full, extra, seen[:len(e.items)], picks); err != nil {
				return nil, err
			}
		} else {
			ev = e.attentionEvidence(hist, mods, out[e.attOut].Float32, steerTerms, firstLogits, userState, alpha, seen[:len(e.items)], picks)
		}
		profile := e.explain.NewProfile(explain.Request{History: hist, Query: req.Query})
		for i, p := range picks {
			resp.Items[i].Explanations = e.explain.Explain(profile, p.row, ev[i], req.ExplainDetail)
		}
	}
	resp.Timings.Explain = time.Since(t5).Microseconds()
	return resp, nil
}

// expectedWait sums the expected waits (queue and run) of the batchers the request passes
// through: its encoders (whatever their caches hold), fusion and the generator's first step.
func (e *Engine) expectedWait(req Request) time.Duration {
	wait := e.fusion.ExpectedWait() + e.gen1.ExpectedWait()
	if req.Query != "" {
		wait += e.text.ExpectedWait()
	}
	if len(req.Image) > 0 {
		wait += e.image.ExpectedWait()
	}
	if len(req.Audio) > 0 {
		wait += e.audio.ExpectedWait()
	}
	return wait
}

// modalities holds the request's modality embeddings in manifest order (nil when absent).
type modalities struct {
	emb [][]float32
	// which modality each slot is
	names []string
}

// encodeModalities embeds the request's modalities, their slots in sc's array.
func (e *Engine) encodeModalities(ctx context.Context, req Request, sc *scratch) (modalities, error) {
	names := e.manifest.Fusion.Modalities
	if cap(sc.mods) < len(names) {
		sc.mods = make([][]float32, len(names))
	}
	sc.mods = sc.mods[:len(names)]
	clear(sc.mods)
	m := modalities{emb: sc.mods, names: names}
	for i, name := range names {
		var v []float32
		var err error
		switch name {
		case modText:
			if req.Query != "" {
				v, err = e.EmbedQuery(ctx, req.Query)
			}
		case modImage:
			if len(req.Image) > 0 {
				v, err = e.EmbedImage(ctx, req.Image)
			}
		case modAudio:
			if len(req.Audio) > 0 {
				v, err = e.EmbedAudio(ctx, req.Audio)
			}
		}
		if err != nil {
			return m, err
		}
		m.emb[i] = v
	}
	return m, nil
}

// fusionScratch holds the arrays of one request's fusion inputs and retrieval hits.
type fusionScratch struct {
	buf    []float32
	tokens []int64
	rows   []int
	hits   []retrieval.Hit
	sh     [15]int64
	in     [7]ort.Tensor
}

// scratch is one request's working memory, kept between requests in scratches: Recommend takes
// one and puts it back when it returns, and nothing it answers points into it (the response's
// items and context are new). A request's steps write here instead of allocating: fusion's
// inputs, the answers of fusion and of the generator's first step (the batchers copy them
// into these Outputs), the history's rows, the modality embeddings' slots, the ranked rows and
// picks.
type scratch struct {
	fusion    fusionScratch
	fusionOut batch.Outputs
	genOut    batch.Outputs
	hist      []int
	mods      [][]float32
	steering  []float32 // the request's steering term of every item
	terms     []float32 // steering plus the similar-items term
	order     []int     // the top rows before diversity re-ranking
	ranked    []int     // the rows listed
	picks     []pick
}

var scratches = sync.Pool{New: func() any { return new(scratch) }}

// fusionInputs builds the fusion graph's six inputs for one request, with the retrieved
// context rows, in sc's arrays (nil: new ones). The inputs and rows stay valid until sc is
// reused.
func (e *Engine) fusionInputs(hist []int, mods modalities, sc *fusionScratch) ([]ort.Tensor, []int) {
	if sc == nil {
		sc = new(fusionScratch)
	}
	D := e.dim
	L := e.manifest.Fusion.MaxHistory
	used := hist
	if len(used) > L {
		used = used[len(used)-L:]
	}
	Lb := max(1, len(used))
	M := len(mods.emb)
	R := e.manifest.Fusion.MaxContext
	// every float input (and the retrieval query) in one array, zeroed
	need := Lb*D + Lb + M*D + M + R*D + R + D
	if cap(sc.buf) < need {
		sc.buf = make([]float32, need)
	}
	buf := sc.buf[:need]
	clear(buf)
	take := func(n int) []float32 {
		v := buf[:n:n]
		buf = buf[n:]
		return v
	}
	history, hmask := take(Lb*D), take(Lb)
	modal, mmask := take(M*D), take(M)
	context, cmask := take(R*D), take(R)
	queryBuf := take(D)
	if cap(sc.tokens) < Lb {
		sc.tokens = make([]int64, Lb)
	}
	tokens := sc.tokens[:Lb]
	clear(tokens)
	for i, r := range used {
		copy(history[i*D:(i+1)*D], e.emb(r))
		hmask[i] = 1
		tokens[i] = e.token(r)
	}
	var query []float32
	for i, v := range mods.emb {
		if v == nil {
			continue
		}
		copy(modal[i*D:(i+1)*D], v)
		mmask[i] = 1
		query = queryBuf
		for d := range v {
			query[d] += v[d]
		}
	}
	if query == nil && len(used) > 0 {
		query = queryBuf
		for _, r := range used {
			for d, x := range e.emb(r) {
				query[d] += x
			}
		}
	}
	var rows []int
	if query != nil && R > 0 {
		rows = sc.rows[:0]
		// the history's catalog rows marked in a pooled catalog-sized array (the index asks
		// about every row it scans: a map lookup each cost more than the scan's products);
		// added items are never retrieved
		marks := takeMarks(len(e.items), used)
		// The index ranks by cosine with its normalised rows; the export ranks by dot product
		// with the item embeddings as stored. The rankings agree because the export writes
		// unit-norm item embeddings.
		sc.hits = e.index.AppendSearch(sc.hits[:0], query, R, marks.marked)
		for j, h := range sc.hits {
			copy(context[j*D:(j+1)*D], e.itemEmb[h.Item*D:(h.Item+1)*D])
			cmask[j] = 1
			rows = append(rows, h.Item)
		}
		putMarks(marks, used)
		sc.rows = rows
	}
	// the seven shapes share one array
	sc.sh = [15]int64{1, int64(Lb), 1, int64(Lb), int64(D), 1, int64(M), int64(D), 1, int64(M), 1, int64(R), int64(D), 1, int64(R)}
	sh := sc.sh[:]
	in := sc.in[:0]
	if e.fusionItems {
		in = append(in, ort.Tensor{Name: bundle.InHistoryItems, Shape: sh[0:2:2], Int64: tokens})
	}
	return append(in,
		ort.Tensor{Name: bundle.InHistory, Shape: sh[2:5:5], Float32: history},
		ort.Tensor{Name: bundle.InHistoryMask, Shape: sh[0:2:2], Float32: hmask},
		ort.Tensor{Name: bundle.InModalities, Shape: sh[5:8:8], Float32: modal},
		ort.Tensor{Name: bundle.InModalityMask, Shape: sh[8:10:10], Float32: mmask},
		ort.Tensor{Name: bundle.InContext, Shape: sh[10:13:13], Float32: context},
		ort.Tensor{Name: bundle.InContextMask, Shape: sh[13:15:15], Float32: cmask},
	), rows
}

// steering is the request's steering term of every item, the fusion's steering output . the
// item's embedding (the index's rows are the item embeddings: Open checks they are unit
// rows), computed once per request; nil when the bundle's fusion has no steering output or
// the request sent no query, image or audio (the output is then zero).
func (e *Engine) steering(out []ort.Tensor, buf []float32) []float32 {
	v := e.steerVec(out)
	if v == nil {
		return nil
	}
	if e.steerLow != nil {
		return e.steerLow.scores(v, buf)
	}
	return e.index.Scores(v, buf)
}

// steerVec is the fusion's steering output, nil when the bundle has none or it is zero (no
// query, image or audio was sent).
func (e *Engine) steerVec(out []ort.Tensor) []float32 {
	if e.steerOut < 0 || e.steerOut >= len(out) {
		return nil
	}
	v := out[e.steerOut].Float32
	if !slices.ContainsFunc(v, func(x float32) bool { return x != 0 }) {
		return nil
	}
	return v
}

// requestTerms is what a request adds to every item's logit at every decoding step, computed
// once per request: the steering term (the model was trained with this sum as its score when
// a request is present) plus the bundle's similar-items term of the history; nil when neither
// applies.
func (e *Engine) requestTerms(out []ort.Tensor, hist []int) []float32 {
	terms, _ := e.requestTermsAndSteering(out, hist, nil)
	return terms
}

// requestTermsAndSteering is requestTerms and, apart, the steering term alone (nil when the
// request sent no modality): what attention evidence takes out to measure the request's part.
// Both are in sc's arrays (nil: new ones) until sc's next use.
func (e *Engine) requestTermsAndSteering(out []ort.Tensor, hist []int, sc *scratch) (terms, steering []float32) {
	if sc == nil {
		sc = new(scratch)
	}
	steering = e.steering(out, sc.steering)
	if steering != nil {
		sc.steering = steering
	}
	if e.similar == nil || e.similar.Weight == 0 || len(hist) == 0 {
		return steering, steering
	}
	terms = growF32(sc.terms, len(e.items))
	sc.terms = terms
	if steering == nil {
		clear(terms)
	} else {
		copy(terms, steering)
	}
	e.similar.Add(terms, hist)
	return terms, steering
}

// addTerms adds the request's terms (requestTerms) to the item columns of logits.
func (e *Engine) addTerms(logits, terms []float32) {
	for i, s := range terms {
		logits[e.offset+i] += s
	}
}

// firstStepLogits runs the generator's first step from [BOS] through its batcher; the
// logits are in sc's buffers (nil: new ones) until sc's next use.
func (e *Engine) firstStepLogits(ctx context.Context, userState []float32, sc *scratch) ([]float32, error) {
	var dst *batch.Outputs // nil: new ones
	if sc != nil {
		dst = &sc.genOut
	}
	shape, token := [4]int64{1, int64(e.dim), 1, 1}, [1]int64{int64(e.bos)}
	in := [2]ort.Tensor{
		{Name: bundle.InUserState, Shape: shape[0:2:2], Float32: userState},
		{Name: bundle.InTokens, Shape: shape[2:4:4], Int64: token[:]},
	}
	out, err := e.gen1.SubmitInto(ctx, in[:], dst)
	if err != nil {
		return nil, err
	}
	return out[0].Float32, nil
}

// generate runs one generator step for one sequence: the user state, the step's token and the
// cache of earlier steps (nil at the first). It returns the logits and the new cache.
func (e *Engine) generate(userState []float32, token int, pastK, pastV []float32, past int) (logits, presK, presV []float32, err error) {
	N, H, Dh := int64(e.genLayers), int64(e.genHeads), int64(e.genHeadDim)
	if pastK == nil {
		pastK, pastV = []float32{}, []float32{}
	}
	start := time.Now()
	defer func() {
		if e.cfg.Observe != nil {
			e.cfg.Observe("generator", 1, time.Since(start), err)
		}
	}()
	out, err := e.sessions["generator"].Run([]ort.Tensor{
		{Name: bundle.InUserState, Shape: []int64{1, int64(e.dim)}, Float32: userState},
		{Name: bundle.InTokens, Shape: []int64{1, 1}, Int64: []int64{int64(token)}},
		{Name: bundle.InPastKeys, Shape: []int64{N, 1, H, int64(past), Dh}, Float32: pastK},
		{Name: bundle.InPastValues, Shape: []int64{N, 1, H, int64(past), Dh}, Float32: pastV},
	})
	if err != nil {
		return nil, nil, nil, err
	}
	return out[0].Float32, out[1].Float32, out[2].Float32, nil
}

type pick struct {
	row            int
	logProb, score float32
}

// logProbs turns logits into log-probabilities over the item columns (columns below the
// token offset are never items), written into dst[row].
func (e *Engine) logProbs(logits []float32, dst []float32) {
	ranking.LogSoftmax(logits[e.offset:], dst)
}

// rowMarks is a catalog-sized array of row marks, kept between requests in markArrays, all
// false there (the history excluded from retrieval, the items not to recommend: a fresh array
// each request was 100 KB to allocate and zero at 100,000 items).
type rowMarks struct {
	marks []bool
	// marked reports marks[i]: made once with the array, so that handing it to the index as
	// its skip function allocates nothing
	marked func(i int) bool
}

var markArrays = sync.Pool{New: func() any {
	m := new(rowMarks)
	m.marked = func(i int) bool { return m.marks[i] }
	return m
}}

// takeMarks returns a pooled array of n marks with rows (those below n) set; give it back
// with putMarks and the same rows.
func takeMarks(n int, rows []int) *rowMarks {
	p := markArrays.Get().(*rowMarks)
	if cap(p.marks) < n {
		p.marks = make([]bool, n)
	}
	p.marks = p.marks[:n]
	for _, r := range rows {
		if r < n {
			p.marks[r] = true
		}
	}
	return p
}

// putMarks unmarks rows and returns the array to the pool; nothing else may be marked.
func putMarks(p *rowMarks, rows []int) {
	for _, r := range rows {
		if r < len(p.marks) {
			p.marks[r] = false
		}
	}
	markArrays.Put(p)
}

// rankBufs holds the log-probability and score buffers of rankTopK between requests.
var rankBufs = sync.Pool{New: func() any { return new([2][]float32) }}

// growF32 returns b resized to n, reallocating only when its capacity is short.
func growF32(b []float32, n int) []float32 {
	if cap(b) < n {
		return make([]float32, n)
	}
	return b[:n]
}

// rankExtra is what a request ranks with beside the logits: the items added to the catalog
// (nil: none), the request's terms (requestTerms) and the fusion's steering vector (steerVec),
// both already added to the catalog's logits but needed for the added items' scores.
type rankExtra struct {
	added        *addedSet
	terms, steer []float32
}

// rankTopK picks the k best unseen items (seen has a row per catalog and added item) by
// IPS-reweighted log-probability; with diversify and a bundle diversity weight, the k are
// re-ranked by maximal marginal relevance from the bundle's number of best candidates
// (engine/ranking.Diversify).
// The picks are in sc's array (nil: a new one) until sc's next use.
func (e *Engine) rankTopK(x rankExtra, logits, userState []float32, seen []bool, alpha float64, k int, diversify bool, sc *scratch) []pick {
	nb := len(e.items)
	n := nb + x.added.len()
	// the two catalog-sized buffers come from a pool: only the k picks outlive this call
	bufs := rankBufs.Get().(*[2][]float32)
	defer rankBufs.Put(bufs)
	lp, score := growF32(bufs[0], n), growF32(bufs[1], n)
	bufs[0], bufs[1] = lp, score
	if n == nb {
		e.logProbs(logits, lp)
	} else {
		copy(lp, logits[e.offset:])
		e.addedScores(x.added, logits, x.terms, x.steer, lp)
		ranking.LogSoftmax(lp, lp)
	}
	copy(score, lp)
	if e.bias != nil {
		e.bias.Add(userState, score[:nb])
	}
	if alpha != 0 {
		e.stats.ReweightAll(score[:nb], alpha)
		if n > nb {
			// added items have no interactions in the bundle's statistics yet
			floor := float32(alpha * e.stats.LogPropensityOf(0))
			for j := nb; j < n; j++ {
				score[j] -= floor
			}
		}
	}
	if sc == nil {
		sc = new(scratch)
	}
	out := sc.picks[:0]
	for _, r := range e.selectTopK(score, seen, k, diversify, sc) {
		out = append(out, pick{r, lp[r], score[r]})
	}
	sc.picks = out
	return out
}

// TopK is the engine's top-k list from final item scores (catalog order): the k best items
// not seen, ties by the lower row, re-ranked for diversity as the bundle's ranking section
// says. Recommend's top-k mode lists by it; replays that add their own terms to
// Engine.LogProbs call it to list exactly as the engine would.
func (e *Engine) TopK(score []float32, seen []bool, k int) []int {
	return e.selectTopK(score, seen, k, true, nil)
}

// selectTopK picks the k best unseen rows by score; with diversify and a bundle diversity
// weight, from the bundle's number of best candidates by maximal marginal relevance. The rows
// are in sc's arrays (nil: new ones) until sc's next use.
func (e *Engine) selectTopK(score []float32, seen []bool, k int, diversify bool, sc *scratch) []int {
	if sc == nil {
		sc = new(scratch)
	}
	want := k
	diversify = diversify && e.diversity > 0
	if diversify {
		want = max(k, e.candidates)
	}
	sc.order = ranking.AppendTopK(sc.order[:0], score, seen, want)
	order := sc.order
	if diversify {
		if len(score) == len(e.items) {
			sc.ranked = ranking.AppendDiversified(sc.ranked[:0], order, score, e.itemEmb, e.dim, e.diversity, k)
			return sc.ranked
		}
		// with added items: the candidates' embeddings and scores gathered, rows mapped back
		emb := make([]float32, 0, len(order)*e.dim)
		sc := make([]float32, len(order))
		local := make([]int, len(order))
		for i, r := range order {
			emb = append(emb, e.emb(r)...)
			sc[i], local[i] = score[r], i
		}
		for i, l := range ranking.Diversify(local, sc, emb, e.dim, e.diversity, k) {
			local[i] = order[l]
		}
		order = local[:min(k, len(order))]
	}
	return order
}

// decodeSlate decodes k steps: each step's best unseen, not yet chosen item is fed back as the
// next token with the key-value cache, so later picks are conditioned on earlier ones. Steps
// run outside the batchers, so ctx is checked before each one: a cancelled or expired request
// stops between steps (a running step always finishes).
// Each step ranks in sc's arrays.
func (e *Engine) decodeSlate(ctx context.Context, userState []float32, x rankExtra, seen []bool, alpha float64, k int, sc *scratch) ([]pick, error) {
	seen = slices.Clone(seen)
	var pastK, pastV []float32
	token, past := e.bos, 0
	out := make([]pick, 0, k)
	for step := 0; step < k; step++ {
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("recommend: slate stopped before step %d of %d: %w", step+1, k, err)
		}
		logits, pk, pv, err := e.generate(userState, token, pastK, pastV, past)
		if err != nil {
			return nil, err
		}
		e.addTerms(logits, x.terms)
		best := e.rankTopK(x, logits, userState, seen, alpha, 1, false, sc)
		if len(best) == 0 {
			break
		}
		out = append(out, best[0])
		seen[best[0].row] = true
		token, pastK, pastV, past = int(e.token(best[0].row)), pk, pv, past+1
	}
	return out, nil
}
