package recommend

import (
	"cmp"
	"context"
	"slices"

	"github.com/llm4rec/llm4rec/engine/explain"
	"github.com/llm4rec/llm4rec/engine/ranking"
	"github.com/llm4rec/llm4rec/engine/retrieval"
	"golang.org/x/sync/errgroup"
)

// DefaultExplainProbes is Config.ExplainProbes' default.
const DefaultExplainProbes = 8

// probe is one counterfactual of a request: one history item (every occurrence of its row)
// or one of the request's modalities left out.
type probe struct {
	source   explain.Source
	row      int // the history row left out (history probes)
	modality int // the modality slot left out (modality probes), else -1
}

// probes lists the counterfactuals an explained request is measured with: its newest
// ExplainProbes distinct history items, then each modality it sent.
func (e *Engine) probes(hist []int, mods modalities) []probe {
	var out []probe
	for i := len(hist) - 1; i >= 0 && len(out) < e.cfg.ExplainProbes; i-- {
		if !slices.ContainsFunc(out, func(p probe) bool { return p.row == hist[i] }) {
			out = append(out, probe{source: explain.FromHistory, row: hist[i], modality: -1})
		}
	}
	for i, v := range mods.emb {
		if v == nil {
			continue
		}
		src := explain.FromQuery
		switch mods.names[i] {
		case modImage:
			src = explain.FromImage
		case modAudio:
			src = explain.FromAudio
		}
		out = append(out, probe{source: src, row: -1, modality: i})
	}
	return out
}

// evidence measures, for each pick, what each probe's evidence did to it: the request is run
// again without that history item or modality through the same fusion (retrieved context
// included) and generator first step, all probes at once through the batchers, and the
// pick's served log-probability and its place in the served top-k list (seen items excluded,
// the bundle's diversity re-ranking applied; past the end when it drops out) are compared
// with the full request's. full is the full request's served log-probabilities (terms
// included) and extra what the ranking adds to them per item (online bias, IPS), which does
// not depend on the history or the request. In slate mode the first step's top-k list stands
// for the slate.
func (e *Engine) evidence(ctx context.Context, hist []int, mods modalities, full, extra []float32, seen []bool, picks []pick) ([][]explain.Evidence, error) {
	ps := e.probes(hist, mods)
	lps := make([][]float32, len(ps))
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range ps {
		g.Go(func() error {
			h, m := hist, mods
			if p.source == explain.FromHistory {
				h = slices.DeleteFunc(slices.Clone(hist), func(r int) bool { return r == p.row })
			} else {
				m.emb = slices.Clone(mods.emb)
				m.emb[p.modality] = nil
			}
			inputs, _ := e.fusionInputs(h, m, nil)
			out, err := e.fusion.Submit(gctx, inputs)
			if err != nil {
				return err
			}
			terms := e.requestTerms(out, h)
			logits, err := e.firstStepLogits(gctx, out[0].Float32, nil)
			if err != nil {
				return err
			}
			e.addTerms(logits, terms)
			lps[i] = make([]float32, len(e.items))
			e.logProbs(logits, lps[i])
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	k := len(picks)
	fullList := e.servedList(full, extra, seen, k)
	lists := make([][]int, len(ps))
	for i := range ps {
		lists[i] = e.servedList(lps[i], extra, seen, k)
	}
	out := make([][]explain.Evidence, len(picks))
	for j, pk := range picks {
		if pk.row >= len(full) {
			continue // an added item: not measured (see added.go)
		}
		rank := position(fullList, pk.row)
		for i, p := range ps {
			out[j] = append(out[j], explain.Evidence{Source: p.source, Row: p.row,
				Drop: float64(full[pk.row] - lps[i][pk.row]), Rank: rank, RankWithout: position(lists[i], pk.row)})
		}
	}
	return out, nil
}

// servedList is the top-k list the engine serves from log-probabilities lp (the ranking's
// per-item additions extra, seen excluded, the bundle's diversity re-ranking applied).
func (e *Engine) servedList(lp, extra []float32, seen []bool, k int) []int {
	score := make([]float32, len(lp))
	for i, v := range lp {
		score[i] = v + extra[i]
	}
	return e.selectTopK(score, seen, k, true, nil)
}

// position is row's 1-based place in list, len(list)+1 when absent.
func position(list []int, row int) int {
	if i := slices.Index(list, row); i >= 0 {
		return i + 1
	}
	return len(list) + 1
}

// Evidence strategies (Config.ExplainEvidence).
const (
	// EvidenceAttention estimates history evidence from the request's own fusion run and
	// measures the request's modalities through their steering term: no further graph run,
	// less faithful (attentionEvidence).
	EvidenceAttention = "attention"
	// EvidenceLeaveOneOut measures every piece by running the request again without it (the
	// default).
	EvidenceLeaveOneOut = "leave_one_out"
)

// servedParts splits the served score of every catalog item into the log-probability of the
// first step's logits (request terms included) and what the ranking adds per item (online
// correction, IPS), which depends on neither the history's items nor the request's modalities.
func (e *Engine) servedParts(firstLogits, userState []float32, alpha float64) (full, extra []float32) {
	full = make([]float32, len(e.items))
	e.logProbs(firstLogits, full)
	extra = make([]float32, len(e.items))
	if e.bias != nil {
		e.bias.Add(userState, extra)
	}
	e.stats.ReweightAll(extra, alpha)
	return full, extra
}

// attentionEvidence finds each pick's evidence without running any graph again:
//
//   - history: the fusion's attention weight on each distinct history item of its window (at
//     its newest position; the newest item, which the fusion also reads directly as its
//     query, weighs 1) times the item's content similarity to the pick; the three strongest
//     are kept as estimated evidence (explain.Evidence.Estimated) and cited above
//     explain.Config.MinInfluence. An estimate: on the default bundle's test users 75% of the
//     history items it cites lower their item's rank when left out (leave-one-out: 99.7%);
//     relative attention weights, a similarity threshold, or the model's own pairwise lift
//     instead of content similarity were all less faithful (54-66%);
//   - modalities: measured through the steering term, the request's additive part of every
//     item's score: the pick's log-probability and its place in the served list with the
//     steering term and without it (the user state held as the request computed it); every
//     modality sent shares the one steering vector, so each is given the same numbers.
//
// Validated against leave-one-out by `llm4rec bench quality` (explanations.faithfulness).
func (e *Engine) attentionEvidence(hist []int, mods modalities, att, steerTerms, firstLogits, userState []float32, alpha float64, seen []bool, picks []pick) [][]explain.Evidence {
	used := hist
	if L := e.manifest.Fusion.MaxHistory; len(used) > L {
		used = used[len(used)-L:]
	}
	type source struct {
		row int
		w   float64
	}
	var srcs []source
	for p := len(used) - 1; p >= 0; p-- {
		if slices.Contains(used[p+1:], used[p]) {
			continue
		}
		w := 1.0
		if p < len(used)-1 {
			w = float64(att[p])
		}
		srcs = append(srcs, source{used[p], w})
	}
	const keep = 3
	out := make([][]explain.Evidence, len(picks))
	for j, pk := range picks {
		ev := make([]explain.Evidence, 0, keep+len(mods.emb))
		for _, s := range srcs {
			sim := float64(retrieval.Dot(e.emb(s.row), e.emb(pk.row)))
			infl := s.w * max(sim, 0)
			if infl <= 0 {
				continue
			}
			x := explain.Evidence{Source: explain.FromHistory, Row: s.row, Drop: infl, Estimated: true, Attention: s.w, Similarity: sim}
			i, _ := slices.BinarySearchFunc(ev, infl, func(a explain.Evidence, v float64) int { return cmp.Compare(v, a.Drop) })
			if i < keep {
				ev = slices.Insert(ev, i, x)
				ev = ev[:min(len(ev), keep)]
			}
		}
		out[j] = ev
	}
	if steerTerms == nil {
		return out
	}
	full, extra := e.servedParts(firstLogits, userState, alpha)
	without := make([]float32, len(full))
	for i, v := range full {
		without[i] = v - steerTerms[i]
	}
	ranking.LogSoftmax(without, without)
	k := len(picks)
	fullList, withoutList := e.servedList(full, extra, seen, k), e.servedList(without, extra, seen, k)
	sent := e.probes(nil, mods) // the modalities the request sent
	for j, pk := range picks {
		if pk.row >= len(full) {
			continue // an added item: its steering is its own (added.go), not measured here
		}
		for _, p := range sent {
			out[j] = append(out[j], explain.Evidence{Source: p.source, Row: -1, Drop: float64(full[pk.row] - without[pk.row]),
				Rank: position(fullList, pk.row), RankWithout: position(withoutList, pk.row)})
		}
	}
	return out
}
