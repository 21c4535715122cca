// Package retrieval holds the catalog's item embeddings in memory and finds the items nearest
// to a vector (a user state, a query's embedding). Exact search is the default: a catalog of a
// few thousand items is scanned in about 0.1 ms, 100,000 items of 384 dimensions in about 20 ms
// (the whole matrix is read per query). Index is the seam for approximate indexes: HNSW
// (hnsw.go); New builds the kind asked for.
package retrieval

import (
	"fmt"
	"math"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"

	"github.com/llm4rec/llm4rec/engine/ranking"
)

// Hit is one retrieved item: its row in the catalog and its cosine similarity.
type Hit struct {
	Item  int
	Score float32
}

// byScore orders hits by descending score, ties by the lower item: the order every index
// returns.
func byScore(a, b Hit) int {
	switch {
	case a.Score > b.Score:
		return -1
	case a.Score < b.Score:
		return 1
	}
	return a.Item - b.Item
}

// Index finds the k items nearest to a query vector. Implementations are safe for concurrent
// Search.
type Index interface {
	// Search returns up to k hits by descending score, skipping items for which skip returns
	// true (skip may be nil).
	Search(query []float32, k int, skip func(item int) bool) []Hit
	// AppendSearch is Search appending the hits to dst (a request's reused buffer: with room
	// for k hits, a search of the exact scan or the inverted file allocates nothing).
	AppendSearch(dst []Hit, query []float32, k int, skip func(item int) bool) []Hit
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
// rows equals ranking by cosine); scores are cosines when it is. The scan's buffers come from
// a pool: only the hits are allocated.
func (e *Exact) Search(query []float32, k int, skip func(int) bool) []Hit {
	return e.AppendSearch(nil, query, k, skip)
}

// AppendSearch is Search appending the hits to dst.
func (e *Exact) AppendSearch(dst []Hit, query []float32, k int, skip func(int) bool) []Hit {
	if k <= 0 || len(query) != e.dim {
		return dst
	}
	buf := scanBufs.Get().(*scanScratch)
	defer scanBufs.Put(buf)
	n := e.Len()
	if cap(buf.f32) < e.dim+n {
		buf.f32 = make([]float32, e.dim+n)
	}
	q := buf.f32[:e.dim]
	copy(q, query)
	Normalize(q)
	scores := e.Scores(q, buf.f32[e.dim:e.dim+n])
	buf.rows = ranking.AppendTopKWhere(buf.rows[:0], n, func(i int) float32 { return scores[i] }, skip, k)
	for _, r := range buf.rows {
		dst = append(dst, Hit{r, scores[r]})
	}
	return dst
}

// scanScratch is a scan's normalised query and scores (f32) and its top rows, kept between
// searches in scanBufs.
type scanScratch struct {
	f32  []float32
	rows []int
}

var scanBufs = sync.Pool{New: func() any { return new(scanScratch) }}

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
