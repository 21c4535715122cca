package retrieval

import (
	"math/rand"
	"slices"

	"github.com/coder/hnsw"
)

// HNSWConfig sets the graph's parameters. Zero fields take the documented defaults.
type HNSWConfig struct {
	// M is the most neighbours a node keeps per layer (default 16).
	M int
	// EfSearch is how many candidates a search keeps (default 100); a search asks the graph
	// for at least this many items and ranks them exactly.
	EfSearch int
	// Seed fixes the graph's level draws, so that a build is reproducible (default 1).
	Seed int64
}

// HNSW is an approximate Index: Search walks a hierarchical navigable small-world graph
// (github.com/coder/hnsw, cosine distance) for EfSearch candidates (more when skipped ones
// leave fewer than k), drops the skipped ones and ranks the rest by their exact scores. Scores and Vector are exact (the
// rows are kept, as in Exact). Building costs O(n log n) distance computations (seconds per
// ten thousand items of 384 dimensions on one core); the graph is immutable after NewHNSW, so
// Search is safe for concurrent use.
type HNSW struct {
	exact *Exact
	graph *hnsw.Graph[int32]
	ef    int
}

var _ Index = (*HNSW)(nil)

// NewHNSW builds the graph over vectors (row-major [n, dim], copied and normalised as by
// NewExact).
func NewHNSW(vectors []float32, dim int, cfg HNSWConfig) (*HNSW, error) {
	if cfg.M <= 0 {
		cfg.M = 16
	}
	if cfg.EfSearch <= 0 {
		cfg.EfSearch = 100
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	ex, err := NewExact(vectors, dim)
	if err != nil {
		return nil, err
	}
	g := hnsw.NewGraph[int32]()
	g.M, g.EfSearch, g.Distance = cfg.M, cfg.EfSearch, hnsw.CosineDistance
	g.Rng = rand.New(rand.NewSource(cfg.Seed))
	for i := range ex.Len() {
		g.Add(hnsw.MakeNode(int32(i), ex.Vector(i)))
	}
	return &HNSW{exact: ex, graph: g, ef: cfg.EfSearch}, nil
}

func (h *HNSW) Dim() int                              { return h.exact.Dim() }
func (h *HNSW) Len() int                              { return h.exact.Len() }
func (h *HNSW) Vector(i int) []float32                { return h.exact.Vector(i) }
func (h *HNSW) Scores(query, out []float32) []float32 { return h.exact.Scores(query, out) }

// Search returns up to k hits by descending exact score among the graph's candidates: it asks
// the graph for EfSearch of them (at least k), drops the skipped ones and, when fewer than k
// remain, asks again for twice as many.
func (h *HNSW) Search(query []float32, k int, skip func(int) bool) []Hit {
	return h.AppendSearch(nil, query, k, skip)
}

// AppendSearch is Search appending the hits to dst (the graph's search allocates its own).
func (h *HNSW) AppendSearch(dst []Hit, query []float32, k int, skip func(int) bool) []Hit {
	return append(dst, h.search(query, k, skip)...)
}

func (h *HNSW) search(query []float32, k int, skip func(int) bool) []Hit {
	if k <= 0 || len(query) != h.exact.dim || h.Len() == 0 {
		return nil
	}
	q := make([]float32, len(query))
	copy(q, query)
	Normalize(q)
	var hits []Hit
	for wide := max(h.ef, k); ; wide *= 2 {
		nodes := h.graph.Search(q, wide)
		hits = hits[:0]
		for _, n := range nodes {
			i := int(n.Key)
			if skip != nil && skip(i) {
				continue
			}
			hits = append(hits, Hit{i, Dot(q, h.exact.Vector(i))})
		}
		if len(hits) >= k || len(nodes) < wide || wide >= h.Len() {
			break
		}
	}
	slices.SortFunc(hits, byScore)
	return hits[:min(k, len(hits))]
}

// Recall is the share of exact's top k that approx also returns, over queries (each skipping
// nothing): recall@k of an approximate index against the exact one.
func Recall(approx, exact Index, queries [][]float32, k int) float64 {
	hit, total := 0, 0
	for _, q := range queries {
		want := exact.Search(q, k, nil)
		got := map[int]bool{}
		for _, h := range approx.Search(q, k, nil) {
			got[h.Item] = true
		}
		for _, w := range want {
			total++
			if got[w.Item] {
				hit++
			}
		}
	}
	if total == 0 {
		return 0
	}
	return float64(hit) / float64(total)
}
