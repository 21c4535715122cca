// Package retrieval holds the catalog's item embeddings in memory and finds the items nearest
// to a vector (a user state, a query's embedding). Exact search is the default: a catalog of a
// few thousand items is scanned in about 0.1 ms, 100,000 items of 384 dimensions in about 20 ms
// (the whole matrix is read per query). Index is the seam for approximate indexes: HNSW
// (hnsw.go); New builds the kind asked for.
package retrieval

import (
	"container/heap"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
)

// Hit is one retrieved item: its row in the catalog and its cosine similarity.
type Hit struct {
	Item  int
	Score float32
}

// Index finds the k items nearest to a query vector. Implementations are safe for concurrent
// Search.
type Index interface {
	// Search returns up to k hits by descending score, skipping items for which skip returns
	// true (skip may be nil).
	Search(query []float32, k int, skip func(item int) bool) []Hit
	// Scores is the dot product of query with every item's vector, in item order, written
	// into out when it has room.
	Scores(query, out []float32) []float32
	// Dim is the vector size.
	Dim() int
	// Len is the number of items.
	Len() int
	// Vector returns item i's (normalised) vector; callers must not modify it.
	Vector(i int) []float32
}

// Exact is a brute-force cosine-similarity index over L2-normalised rows.
type Exact struct {
	dim  int
	rows []float32 // [n, dim], each row L2-normalised
}

var _ Index = (*Exact)(nil)

// NewExact builds an index over vectors (row-major [n, dim]); rows are copied and normalised.
// A zero row stays zero and scores 0 against everything.
func NewExact(vectors []float32, dim int) (*Exact, error) {
	if dim <= 0 || len(vectors)%dim != 0 {
		return nil, fmt.Errorf("retrieval: %d values are not rows of %d", len(vectors), dim)
	}
	rows := make([]float32, len(vectors))
	copy(rows, vectors)
	for i := 0; i < len(rows); i += dim {
		Normalize(rows[i : i+dim])
	}
	return &Exact{dim: dim, rows: rows}, nil
}

// Normalize scales v to unit L2 norm in place (a zero vector stays zero).
func Normalize(v []float32) {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	if s == 0 {
		return
	}
	inv := float32(1 / math.Sqrt(s))
	for i := range v {
		v[i] *= inv
	}
}

// Dot is the inner product of two vectors of the same length.
func Dot(a, b []float32) float32 {
	var s float32
	b = b[:len(a)]
	for i, x := range a {
		s += x * b[i]
	}
	return s
}

func (e *Exact) Dim() int               { return e.dim }
func (e *Exact) Len() int               { return len(e.rows) / e.dim }
func (e *Exact) Vector(i int) []float32 { return e.rows[i*e.dim : (i+1)*e.dim : (i+1)*e.dim] }

// Search scans every row. The query need not be normalised (ranking by dot product with unit
// rows equals ranking by cosine); scores are cosines when it is.
func (e *Exact) Search(query []float32, k int, skip func(int) bool) []Hit {
	if k <= 0 || len(query) != e.dim {
		return nil
	}
	q := make([]float32, e.dim)
	copy(q, query)
	Normalize(q)
	scores := e.Scores(q, nil)
	h := make(minHeap, 0, k+1)
	for i, s := range scores {
		if skip != nil && skip(i) {
			continue
		}
		if len(h) < k {
			heap.Push(&h, Hit{i, s})
		} else if s > h[0].Score || (s == h[0].Score && i < h[0].Item) {
			h[0] = Hit{i, s}
			heap.Fix(&h, 0)
		}
	}
	out := make([]Hit, len(h))
	for i := len(h) - 1; i >= 0; i-- {
		out[i] = heap.Pop(&h).(Hit)
	}
	return out
}

// Scores writes the dot product of query (as given, not normalised) with every row into out
// (reused when it has room) and returns it: one matrix-vector product (gonum's assembly
// kernels).
func (e *Exact) Scores(query, out []float32) []float32 {
	n := e.Len()
	if cap(out) < n {
		out = make([]float32, n)
	}
	out = out[:n]
	blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: n, Cols: e.dim, Stride: e.dim, Data: e.rows},
		blas32.Vector{N: e.dim, Inc: 1, Data: query}, 0, blas32.Vector{N: n, Inc: 1, Data: out})
	return out
}

// minHeap keeps the k best hits with the worst on top; ties favour the lower item id so
// results are deterministic.
type minHeap []Hit

func (h minHeap) Len() int { return len(h) }
func (h minHeap) Less(i, j int) bool {
	if h[i].Score != h[j].Score {
		return h[i].Score < h[j].Score
	}
	return h[i].Item > h[j].Item
}
func (h minHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *minHeap) Push(x any)   { *h = append(*h, x.(Hit)) }
func (h *minHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
