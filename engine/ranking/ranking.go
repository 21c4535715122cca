// Package ranking holds the serving-time ranking terms a bundle's export chose on validation
// (docs/BUNDLE.md, "ranking"): the similar-items evidence added to the generator's logits and
// the diversity re-ranking of the best candidates. The export's llm4rec_export/rank.py is the
// reference; golden recommendations check that both agree.
package ranking

import (
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas/blas64"
)

// Similar is each item's most similar items by training co-occurrence and how a history's
// evidence for them enters the logits.
type Similar struct {
	rows    []int32   // [n, k] neighbour rows, -1 padding
	weights []float32 // [n, k] similarities, 0 padding
	n, k    int
	// Weight multiplies the normalised evidence (0: the term is off).
	Weight float64
	// Decay is the factor per position back from the newest history item (newest: 1).
	Decay float64
	// MaxHistory is how many of the newest history items count.
	MaxHistory int
}

// NewSimilar checks and keeps neighbour tables of n items with k neighbours each.
func NewSimilar(rows []int32, weights []float32, n, k int, weight, decay float64, maxHistory int) (*Similar, error) {
	if n <= 0 || k < 0 || len(rows) != n*k || len(weights) != n*k {
		return nil, fmt.Errorf("ranking: similar items: %d rows and %d weights for %d items of %d neighbours", len(rows), len(weights), n, k)
	}
	if math.IsNaN(weight) || math.IsInf(weight, 0) || weight < 0 {
		return nil, fmt.Errorf("ranking: similar items weight %v: want a finite value >= 0", weight)
	}
	if math.IsNaN(decay) || decay <= 0 || decay > 1 {
		return nil, fmt.Errorf("ranking: similar items decay %v: want 0 < decay <= 1", decay)
	}
	if maxHistory <= 0 {
		return nil, fmt.Errorf("ranking: similar items max_history %d: want > 0", maxHistory)
	}
	for i, r := range rows {
		if r < -1 || int(r) >= n {
			return nil, fmt.Errorf("ranking: similar items: neighbour %d of item %d is row %d, outside the catalog of %d", i%k, i/k, r, n)
		}
		w := weights[i]
		if math.IsNaN(float64(w)) || math.IsInf(float64(w), 0) || w < 0 {
			return nil, fmt.Errorf("ranking: similar items: weight %v of item %d is not a finite value >= 0", w, i/k)
		}
	}
	return &Similar{rows: rows, weights: weights, n: n, k: k, Weight: weight, Decay: decay, MaxHistory: maxHistory}, nil
}

// Neighbours returns item row's neighbour rows and similarities (padding included).
func (s *Similar) Neighbours(row int) ([]int32, []float32) {
	return s.rows[row*s.k : (row+1)*s.k], s.weights[row*s.k : (row+1)*s.k]
}

// Evidence writes into dst (one value per item) the history's normalised evidence: for the
// newest MaxHistory items h_1..h_m (oldest first), sum over t of Decay^(m-t) * sim(h_t, j)
// over h_t's neighbours j, divided by its largest value (all zero when nothing is a
// neighbour). Accumulated in float64, as the export does. A history row outside the table (an
// item added to the catalog after export) has no neighbours yet: it keeps its place in the
// decay and adds nothing.
func (s *Similar) Evidence(hist []int, dst []float64) {
	clear(dst)
	if len(hist) > s.MaxHistory {
		hist = hist[len(hist)-s.MaxHistory:]
	}
	m := len(hist)
	for t, h := range hist {
		if h < 0 || h >= s.n {
			continue
		}
		w := math.Pow(s.Decay, float64(m-1-t))
		rows, sims := s.Neighbours(h)
		for j, r := range rows {
			if r >= 0 {
				dst[r] += w * float64(sims[j])
			}
		}
	}
	mx := 0.0
	for _, v := range dst {
		mx = max(mx, v)
	}
	if mx > 0 {
		for i := range dst {
			dst[i] /= mx
		}
	}
}

// evidenceBufs holds Add's catalog-sized evidence buffers between requests.
var evidenceBufs = sync.Pool{New: func() any { return new([]float64) }}

// Add adds Weight times the history's evidence to logits (one per item); nothing when Weight
// is 0 or the history is empty.
func (s *Similar) Add(logits []float32, hist []int) {
	if s == nil || s.Weight == 0 || len(hist) == 0 {
		return
	}
	buf := evidenceBufs.Get().(*[]float64)
	defer evidenceBufs.Put(buf)
	if cap(*buf) < s.n {
		*buf = make([]float64, s.n)
	}
	ev := (*buf)[:s.n]
	s.Evidence(hist, ev)
	for i, v := range ev {
		if v != 0 {
			logits[i] = float32(float64(logits[i]) + s.Weight*v)
		}
	}
}

// Diversify re-ranks candidates (item rows, best first by score) by maximal marginal
// relevance and returns the first k: each pick is the candidate with the highest
// score - lambda * (its largest dot product with an item already picked; 0 for the first),
// ties by candidate order. emb holds unit item embeddings [n, dim]. The dot products are
// taken in float64, as the export takes them: the candidates' rows are widened once into a
// pooled buffer and multiplied by gonum's float64 kernels (the widening inside every product
// made this the largest part of ranking at 1,682 items).
func Diversify(candidates []int, score []float32, emb []float32, dim int, lambda float64, k int) []int {
	return AppendDiversified(nil, candidates, score, emb, dim, lambda, k)
}

// AppendDiversified is Diversify appending the picks to dst (no allocation when dst has room
// for k more and there are at most 128 candidates).
func AppendDiversified(dst, candidates []int, score []float32, emb []float32, dim int, lambda float64, k int) []int {
	k = min(k, len(candidates))
	n := len(candidates)
	var takenOnStack [128]bool // the engine re-ranks 50 candidates
	taken := takenOnStack[:0]
	if n <= len(takenOnStack) {
		taken = takenOnStack[:n]
	} else {
		taken = make([]bool, n)
	}
	out := slices.Grow(dst, k)
	picked := len(out)
	buf := wideRows.Get().(*[]float64)
	defer wideRows.Put(buf)
	if cap(*buf) < n*(dim+1) {
		*buf = make([]float64, n*(dim+1))
	}
	wide := (*buf)[:n*dim]
	near := (*buf)[n*dim : n*(dim+1)]
	clear(near)
	for i, r := range candidates {
		for j, x := range emb[r*dim : (r+1)*dim] {
			wide[i*dim+j] = float64(x)
		}
	}
	row := func(i int) blas64.Vector { return blas64.Vector{N: dim, Inc: 1, Data: wide[i*dim : (i+1)*dim]} }
	for len(out)-picked < k {
		best, bestV := -1, math.Inf(-1)
		for i, r := range candidates {
			if taken[i] {
				continue
			}
			if v := float64(score[r]) - lambda*near[i]; v > bestV {
				best, bestV = i, v
			}
		}
		if best < 0 {
			break
		}
		taken[best] = true
		out = append(out, candidates[best])
		pe := row(best)
		for i := range candidates {
			if taken[i] {
				continue
			}
			d := blas64.Dot(row(i), pe)
			if len(out)-picked == 1 || d > near[i] {
				near[i] = d
			}
		}
	}
	return out
}

// wideRows holds Diversify's float64 copies of the candidates' rows (and their nearest-pick
// similarities after them) between calls.
var wideRows = sync.Pool{New: func() any { return new([]float64) }}
