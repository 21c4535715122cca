package retrieval

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/mat"

	"github.com/llm4rec/llm4rec/engine/ranking"
)

// IVF is an approximate Index: an inverted file over spherical k-means clusters. The rows
// are split into Lists clusters by cosine similarity to their centroids; Search scores the
// query against the centroids, scans the Probe nearest clusters exactly and ranks what it
// found by exact score. A query whose nearest items sit in clusters outside the probed ones
// misses them: recall against Exact depends on how clustered the catalog is (item
// embeddings of real catalogs are: categories, genres, brands), and is measured by
// `bench scale --index ivf`.
//
// Written here rather than taken from a library: the one approximate-search module served to
// this project, github.com/coder/hnsw (HNSW in this package), measured recall@10 of 0.08 to
// 0.30 on our catalogs' request-like queries, and an inverted file is a short use of the
// same gonum BLAS kernels the exact scan runs on.
//
// The rows are kept once, in cluster order, so that a probed cluster is one contiguous
// matrix-vector product (with the reduced scan below, their projections are, and the rows stay
// in item order); Vector and Scores answer in item order as Exact does.
//
// Wide rows (Reduced, by default for 256 dimensions and more) are scanned through their
// projection on the Reduced principal axes of the catalog, kept beside them in the same
// order, and the Rerank best of that scan are scored exactly: scanning the probed clusters is
// bound by memory reads (at 100,000 items of 384 dimensions, 24 probed lists are about 12 MB
// a query), and 64 of 384 dimensions read a sixth of it. The principal axes are those of the
// rows' second moments (inner products are what is approximated), from a sample of the rows. Building runs
// a fixed number of k-means iterations on a sample of the rows (seeded, so a build is
// reproducible) and assigns every row; the index is immutable afterwards, so Search is safe
// for concurrent use.
type IVF struct {
	dim       int
	rows      []float32 // [n, dim] unit rows, cluster by cluster (item order with the reduced scan)
	pos       []int32   // item -> its row in rows
	item      []int32   // row in rows -> item
	start     []int     // cluster c holds rows start[c]..start[c+1]
	centroids []float32 // [lists, dim] unit rows
	probe     int
	// the reduced scan: 0 = off; else low holds the rows' projections [n, reduced] in cluster
	// order on the axes [reduced, dim], and rerank candidates are scored exactly
	reduced int
	axes    []float32
	low     []float32
	rerank  int
}

var _ Index = (*IVF)(nil)

// IVFConfig sets the inverted file's parameters. Zero fields take the documented defaults.
type IVFConfig struct {
	// Lists is the number of clusters (default: the square root of the number of rows,
	// at least 1).
	Lists int
	// Probe is how many of the nearest clusters a search scans (default DefaultIVFProbe,
	// at most Lists).
	Probe int
	// Iterations of k-means (default 8).
	Iterations int
	// Sample is how many rows k-means trains on (default 32 per list; all rows when there
	// are fewer).
	Sample int
	// Seed fixes the sample and the initial centroids (default 1).
	Seed uint64
	// Shared says that vectors are unit rows (norm within 1e-3 of 1, or 0) that stay unchanged
	// while the index lives: with the reduced scan the index then reads them in place instead
	// of keeping a normalised copy (154 MB at 100,000 rows of 384); without it they are copied
	// as always. Rows that are not unit are an error.
	Shared bool
	// Reduced is the number of principal axes the probed clusters are scanned on (default
	// DefaultIVFReduced for rows of 256 dimensions and more, else the full rows; a value at or
	// above the rows' dimension scans the full rows).
	Reduced int
	// Rerank is how many of the reduced scan's best rows are scored exactly (default
	// DefaultIVFRerank; at least the k asked for).
	Rerank int
}

// DefaultIVFReduced and DefaultIVFRerank are IVFConfig's defaults for wide rows, chosen by
// recall@10 against the exact scan and search time (TestIVFReducedSweep, bench/README.md): on
// the synthetic 100,000-item catalog and the committed bundles' embeddings 32 axes and 64
// re-scored rows already keep the full rows' recall (16 axes or 32 rows lose some); on
// clusters with isotropic noise, which principal axes describe worst (TestIVFReducedScan),
// 64 re-scored rows lost 3% of it and 128 none.
const (
	DefaultIVFReduced = 64
	DefaultIVFRerank  = 128
)

// DefaultIVFProbe is IVFConfig.Probe's default: chosen by recall@10 and time on the
// committed bundles and the synthetic 100,000-item catalog (bench/README.md, bench scale).
const DefaultIVFProbe = 24

// NewIVF builds the index over vectors (row-major [n, dim], copied and normalised as by
// NewExact; with IVFConfig.Shared and the reduced scan, read in place).
func NewIVF(vectors []float32, dim int, cfg IVFConfig) (*IVF, error) {
	if dim <= 0 || len(vectors)%dim != 0 {
		return nil, fmt.Errorf("retrieval: %d values are not rows of %d", len(vectors), dim)
	}
	n := len(vectors) / dim
	if cfg.Lists < 0 || cfg.Probe < 0 || cfg.Iterations < 0 || cfg.Sample < 0 || cfg.Reduced < 0 || cfg.Rerank < 0 {
		return nil, fmt.Errorf("retrieval: ivf: negative parameter in %+v", cfg)
	}
	if cfg.Lists == 0 {
		cfg.Lists = max(1, int(math.Round(math.Sqrt(float64(n)))))
	}
	cfg.Lists = max(1, min(cfg.Lists, n))
	if cfg.Probe == 0 {
		cfg.Probe = DefaultIVFProbe
	}
	cfg.Probe = min(cfg.Probe, cfg.Lists)
	if cfg.Iterations == 0 {
		cfg.Iterations = 8
	}
	if cfg.Sample == 0 {
		cfg.Sample = 32 * cfg.Lists
	}
	if cfg.Seed == 0 {
		cfg.Seed = 1
	}
	if cfg.Reduced == 0 && dim >= 256 {
		cfg.Reduced = DefaultIVFReduced
	}
	if cfg.Reduced >= dim {
		cfg.Reduced = 0
	}
	if cfg.Rerank == 0 {
		cfg.Rerank = DefaultIVFRerank
	}
	var unit []float32
	if cfg.Shared && cfg.Reduced > 0 {
		for i := 0; i < n; i++ {
			r := vectors[i*dim : (i+1)*dim]
			if nn := Dot(r, r); nn != 0 && math.Abs(math.Sqrt(float64(nn))-1) > 1e-3 {
				return nil, fmt.Errorf("retrieval: ivf: shared row %d has norm %.4f, want unit rows", i, math.Sqrt(float64(nn)))
			}
		}
		unit = vectors
	} else {
		ex, err := NewExact(vectors, dim)
		if err != nil {
			return nil, err
		}
		unit = ex.rows
	}
	x := &IVF{dim: dim, probe: cfg.Probe}
	if n == 0 {
		x.start = []int{0, 0}
		x.centroids = make([]float32, dim)
		x.probe = 1
		return x, nil
	}
	x.centroids = kmeans(unit, n, dim, cfg)
	assign := nearestCentroids(unit, n, x.centroids, cfg.Lists, dim)
	// counting sort of the rows by cluster, item order kept within a cluster
	x.start = make([]int, cfg.Lists+1)
	for _, c := range assign {
		x.start[c+1]++
	}
	for c := 0; c < cfg.Lists; c++ {
		x.start[c+1] += x.start[c]
	}
	next := slices.Clone(x.start[:cfg.Lists])
	x.pos = make([]int32, n)
	x.item = make([]int32, n)
	for i, c := range assign {
		r := next[c]
		next[c]++
		x.pos[i], x.item[r] = int32(r), int32(i)
	}
	if cfg.Reduced > 0 {
		// the reduced scan: the rows stay in item order (read only to re-score a few), their
		// projections go in cluster order, the scan's contiguous matrix-vector products
		x.rows, x.reduced, x.rerank = unit, cfg.Reduced, cfg.Rerank
		var err error
		if x.axes, err = principalAxes(unit, n, dim, cfg.Reduced, cfg.Sample); err != nil {
			return nil, err
		}
		byItem := make([]float32, n*cfg.Reduced)
		blas32.Gemm(blas.NoTrans, blas.Trans, 1,
			blas32.General{Rows: n, Cols: dim, Stride: dim, Data: unit},
			blas32.General{Rows: cfg.Reduced, Cols: dim, Stride: dim, Data: x.axes},
			0, blas32.General{Rows: n, Cols: cfg.Reduced, Stride: cfg.Reduced, Data: byItem})
		x.low = make([]float32, n*cfg.Reduced)
		for r, i := range x.item {
			copy(x.low[r*cfg.Reduced:(r+1)*cfg.Reduced], byItem[int(i)*cfg.Reduced:(int(i)+1)*cfg.Reduced])
		}
		return x, nil
	}
	// the rows moved into cluster order in place, one permutation cycle at a time (one copy
	// of the catalog in memory, not two): slot r receives item[r]'s row, which sits at slot
	// item[r] (its item order) until that slot has been given its own row
	tmp := make([]float32, dim)
	done := make([]bool, n)
	for r := 0; r < n; r++ {
		if done[r] {
			continue
		}
		copy(tmp, unit[r*dim:(r+1)*dim])
		at := r
		for {
			done[at] = true
			from := int(x.item[at])
			if from == r {
				copy(unit[at*dim:(at+1)*dim], tmp)
				break
			}
			copy(unit[at*dim:(at+1)*dim], unit[from*dim:(from+1)*dim])
			at = from
		}
	}
	x.rows = unit
	return x, nil
}

// principalAxes returns the r leading eigenvectors ([r, dim], unit rows, largest eigenvalue
// first) of the second-moment matrix of up to sample of the n rows, taken at an even stride.
func principalAxes(rows []float32, n, dim, r, sample int) ([]float32, error) {
	m := max(1, min(sample, n))
	s := make([]float32, m*dim)
	for i := 0; i < m; i++ {
		j := i * n / m
		copy(s[i*dim:(i+1)*dim], rows[j*dim:(j+1)*dim])
	}
	g := make([]float32, dim*dim)
	blas32.Gemm(blas.Trans, blas.NoTrans, 1, blas32.General{Rows: m, Cols: dim, Stride: dim, Data: s},
		blas32.General{Rows: m, Cols: dim, Stride: dim, Data: s}, 0, blas32.General{Rows: dim, Cols: dim, Stride: dim, Data: g})
	sym := mat.NewSymDense(dim, nil)
	for i := 0; i < dim; i++ {
		for j := i; j < dim; j++ {
			sym.SetSym(i, j, float64(g[i*dim+j]))
		}
	}
	var eig mat.EigenSym
	if !eig.Factorize(sym, true) {
		return nil, errors.New("retrieval: ivf: the rows' second moments did not factorize (non-finite values?)")
	}
	axes := make([]float32, r*dim)
	var vec mat.Dense
	eig.VectorsTo(&vec) // columns, eigenvalues ascending
	for a := 0; a < r; a++ {
		col := dim - 1 - a
		for d := 0; d < dim; d++ {
			axes[a*dim+d] = float32(vec.At(d, col))
		}
	}
	return axes, nil
}

// kmeans returns cfg.Lists unit centroids of a seeded sample of the unit rows (spherical
// k-means: assignment by dot product, centroids the normalised means). A cluster left empty
// takes a random sample row.
func kmeans(unit []float32, n, dim int, cfg IVFConfig) []float32 {
	rng := rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15))
	m := min(cfg.Sample, n)
	sample := unit
	if m < n {
		sample = make([]float32, m*dim)
		for i, r := range rng.Perm(n)[:m] {
			copy(sample[i*dim:(i+1)*dim], unit[r*dim:(r+1)*dim])
		}
	}
	k := cfg.Lists
	cent := make([]float32, k*dim)
	for c, r := range rng.Perm(m)[:k] {
		copy(cent[c*dim:(c+1)*dim], sample[r*dim:(r+1)*dim])
	}
	sum := make([]float64, k*dim)
	count := make([]int, k)
	for it := 0; it < cfg.Iterations; it++ {
		assign := nearestCentroids(sample, m, cent, k, dim)
		clear(sum)
		clear(count)
		for i, c := range assign {
			count[c]++
			s := sum[int(c)*dim : (int(c)+1)*dim]
			for d, v := range sample[i*dim : (i+1)*dim] {
				s[d] += float64(v)
			}
		}
		for c := 0; c < k; c++ {
			dst := cent[c*dim : (c+1)*dim]
			if count[c] == 0 {
				r := rng.IntN(m)
				copy(dst, sample[r*dim:(r+1)*dim])
				continue
			}
			for d, v := range sum[c*dim : (c+1)*dim] {
				dst[d] = float32(v)
			}
			Normalize(dst)
		}
	}
	return cent
}

// nearestCentroids assigns each of the n unit rows to the centroid of largest dot product
// (ties: the lower centroid), in blocks of rows so that the score matrix stays small.
func nearestCentroids(rows []float32, n int, cent []float32, k, dim int) []int32 {
	const block = 1024
	out := make([]int32, n)
	scores := make([]float32, block*k)
	for lo := 0; lo < n; lo += block {
		b := min(block, n-lo)
		blas32.Gemm(blas.NoTrans, blas.Trans, 1,
			blas32.General{Rows: b, Cols: dim, Stride: dim, Data: rows[lo*dim : (lo+b)*dim]},
			blas32.General{Rows: k, Cols: dim, Stride: dim, Data: cent},
			0, blas32.General{Rows: b, Cols: k, Stride: k, Data: scores[:b*k]})
		for i := 0; i < b; i++ {
			row := scores[i*k : (i+1)*k]
			best := 0
			for c, v := range row {
				if v > row[best] {
					best = c
				}
			}
			out[lo+i] = int32(best)
		}
	}
	return out
}

func (x *IVF) Dim() int { return x.dim }
func (x *IVF) Len() int { return len(x.pos) }

// Lists is the number of clusters; Probe how many a search scans.
func (x *IVF) Lists() int { return len(x.start) - 1 }
func (x *IVF) Probe() int { return x.probe }

// Vector returns item i's unit vector; callers must not modify it.
func (x *IVF) Vector(i int) []float32 {
	r := i
	if x.reduced == 0 {
		r = int(x.pos[i]) // cluster order
	}
	return x.rows[r*x.dim : (r+1)*x.dim : (r+1)*x.dim]
}

// Scores writes the dot product of query with every item's unit vector into out (item
// order, reused when it has room): exact, one matrix-vector product over all rows.
func (x *IVF) Scores(query, out []float32) []float32 {
	n := x.Len()
	out = sized(out, n)
	if x.reduced > 0 { // rows in item order
		if n > 0 {
			blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: n, Cols: x.dim, Stride: x.dim, Data: x.rows},
				blas32.Vector{N: x.dim, Inc: 1, Data: query}, 0, blas32.Vector{N: n, Inc: 1, Data: out})
		}
		return out
	}
	buf := ivfBufs.Get().(*ivfScratch)
	defer ivfBufs.Put(buf)
	buf.scores = sized(buf.scores, n)
	s := buf.scores
	if n > 0 {
		blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: n, Cols: x.dim, Stride: x.dim, Data: x.rows},
			blas32.Vector{N: x.dim, Inc: 1, Data: query}, 0, blas32.Vector{N: n, Inc: 1, Data: s})
	}
	for r, v := range s {
		out[x.item[r]] = v
	}
	return out
}

// ivfScratch is a search's reusable memory: the normalised query (and its projection), the
// centroid scores, the probed rows' scores and those rows, the candidates scored exactly.
type ivfScratch struct {
	q, qlow, cent, scores []float32
	rowOf                 []int32
	clusters, best        []int
	cand                  []Hit
}

// sized returns b with length n, reallocated only when its capacity is short.
func sized[T any](b []T, n int) []T {
	if cap(b) < n {
		return make([]T, n)
	}
	return b[:n]
}

var ivfBufs = sync.Pool{New: func() any { return new(ivfScratch) }}

// Search returns up to k hits by descending exact score among the rows of the Probe clusters
// nearest to the query (twice as many clusters, nearest first, while skipped items leave
// fewer than k there), ties by the lower item. Only the hits are allocated.
func (x *IVF) Search(query []float32, k int, skip func(int) bool) []Hit {
	return x.AppendSearch(nil, query, k, skip)
}

// AppendSearch is Search appending the hits to dst.
func (x *IVF) AppendSearch(dst []Hit, query []float32, k int, skip func(int) bool) []Hit {
	if k <= 0 || len(query) != x.dim || x.Len() == 0 {
		return dst
	}
	buf := ivfBufs.Get().(*ivfScratch)
	defer ivfBufs.Put(buf)
	lists := x.Lists()
	buf.q, buf.cent = sized(buf.q, x.dim), sized(buf.cent, lists)
	q := buf.q
	copy(q, query)
	Normalize(q)
	blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: lists, Cols: x.dim, Stride: x.dim, Data: x.centroids},
		blas32.Vector{N: x.dim, Inc: 1, Data: q}, 0, blas32.Vector{N: lists, Inc: 1, Data: buf.cent})
	if x.reduced > 0 {
		buf.qlow = sized(buf.qlow, x.reduced)
		blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: x.reduced, Cols: x.dim, Stride: x.dim, Data: x.axes},
			blas32.Vector{N: x.dim, Inc: 1, Data: q}, 0, blas32.Vector{N: x.reduced, Inc: 1, Data: buf.qlow})
	}
	for probe := x.probe; ; probe = min(2*probe, lists) {
		buf.clusters = ranking.AppendTopK(buf.clusters[:0], buf.cent, nil, probe)
		hits := x.scan(dst, q, buf.clusters, k, skip, buf)
		if len(hits)-len(dst) >= k || probe == lists {
			return hits
		}
	}
}

// scan ranks the rows of the given clusters: exactly, or with the reduced scan by the
// projections and then exactly among its best.
func (x *IVF) scan(dst []Hit, q []float32, clusters []int, k int, skip func(int) bool, buf *ivfScratch) []Hit {
	rows, dim, qs := x.rows, x.dim, q
	if x.reduced > 0 {
		rows, dim, qs = x.low, x.reduced, buf.qlow
	}
	total := 0
	for _, c := range clusters {
		total += x.start[c+1] - x.start[c]
	}
	buf.scores = sized(buf.scores, total)
	scores := buf.scores
	rowOf := buf.rowOf[:0] // the candidates' rows, in scan order
	off := 0
	for _, c := range clusters {
		lo, hi := x.start[c], x.start[c+1]
		if hi == lo {
			continue
		}
		blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: hi - lo, Cols: dim, Stride: dim, Data: rows[lo*dim : hi*dim]},
			blas32.Vector{N: dim, Inc: 1, Data: qs}, 0, blas32.Vector{N: hi - lo, Inc: 1, Data: scores[off : off+hi-lo]})
		for r := lo; r < hi; r++ {
			rowOf = append(rowOf, int32(r))
		}
		off += hi - lo
	}
	buf.rowOf = rowOf
	if x.reduced > 0 {
		// the reduced scan's best, scored exactly (blas32.Dot is the kernel of the exact
		// scan's matrix-vector product, so scores agree with Exact's), ordered as Exact orders
		buf.best = ranking.AppendTopKWhere(buf.best[:0], total, func(i int) float32 { return scores[i] }, func(i int) bool {
			return skip != nil && skip(int(x.item[rowOf[i]]))
		}, max(k, x.rerank))
		cand := buf.cand[:0]
		for _, i := range buf.best {
			it := int(x.item[rowOf[i]]) // the full rows are in item order here
			cand = append(cand, Hit{it, blas32.Dot(blas32.Vector{N: x.dim, Inc: 1, Data: q},
				blas32.Vector{N: x.dim, Inc: 1, Data: x.rows[it*x.dim : (it+1)*x.dim]})})
		}
		slices.SortFunc(cand, byScore)
		buf.cand = cand
		return append(dst, cand[:min(k, len(cand))]...)
	}
	// the k best by score (an exact tie at the cut keeps the one scanned first), then ordered
	// by score, ties by the lower item, as Exact orders them
	buf.best = ranking.AppendTopKWhere(buf.best[:0], total, func(i int) float32 { return scores[i] }, func(i int) bool {
		return skip != nil && skip(int(x.item[rowOf[i]]))
	}, k)
	at := len(dst)
	for _, i := range buf.best {
		dst = append(dst, Hit{int(x.item[rowOf[i]]), scores[i]})
	}
	slices.SortFunc(dst[at:], byScore)
	return dst
}
