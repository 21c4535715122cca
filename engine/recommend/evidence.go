package recommend

import (
	"context"
	"slices"

	"github.com/llm4rec/llm4rec/engine/explain"
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
			inputs, _ := e.fusionInputs(h, m)
			out, err := e.fusion.Submit(gctx, inputs)
			if err != nil {
				return err
			}
			terms := e.requestTerms(out, h)
			logits, err := e.firstStepLogits(gctx, out[0].Float32)
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
	return e.selectTopK(score, seen, k, true)
}

// position is row's 1-based place in list, len(list)+1 when absent.
func position(list []int, row int) int {
	if i := slices.Index(list, row); i >= 0 {
		return i + 1
	}
	return len(list) + 1
}
