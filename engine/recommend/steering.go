package recommend

import (
	"fmt"
	"sync"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/blas32"
	"gonum.org/v1/gonum/mat"
)

// lowRankSteering takes every catalog item's steering term in the rank of the fusion's
// steering map. The fusion's steering output is v = Up . s (Up [D, r] from the bundle's
// fusion.steering_up, s of rank r), so v . content_i = s . (Up^T content_i): the items are
// projected once at load ([N, r]) and a request recovers s from v by Up's pseudo-inverse
// ([r, D]), then reads N x r values instead of N x D (a sixth at D 384, r 64: the full product
// read 154 MB at 100,000 items).
type lowRankSteering struct {
	dim, rank, n int
	items        []float32 // [n, rank]: content_i . Up
	pinv         []float32 // [rank, dim]: (Up^T Up)^-1 Up^T
}

// newLowRankSteering projects the n unit item rows of emb [n, dim] by up [dim, rank]. It
// returns nil, nil when Up has no full column rank (an untrained map: its output is not
// recoverable in the rank, and the engine takes the full product).
func newLowRankSteering(up []float32, dim, rank int, emb []float32, n int) (*lowRankSteering, error) {
	if rank < 1 || rank > dim || len(up) != dim*rank || len(emb) != n*dim {
		return nil, fmt.Errorf("recommend: steering_up holds %d values, want [%d, %d] with the rank in [1, %d]", len(up), dim, rank, dim)
	}
	w := mat.NewDense(dim, rank, nil)
	for i := range dim {
		for j := range rank {
			w.Set(i, j, float64(up[i*rank+j]))
		}
	}
	var gram mat.Dense
	gram.Mul(w.T(), w)
	// a map whose columns are (nearly) dependent cannot be inverted on its range: the full
	// product stays exact for it
	if c := mat.Cond(&gram, 2); c > 1e8 {
		return nil, nil
	}
	var pinv mat.Dense
	if err := pinv.Solve(&gram, w.T()); err != nil {
		return nil, nil
	}
	l := &lowRankSteering{dim: dim, rank: rank, n: n, items: make([]float32, n*rank), pinv: make([]float32, rank*dim)}
	for i := range rank {
		for j := range dim {
			l.pinv[i*dim+j] = float32(pinv.At(i, j))
		}
	}
	if n > 0 {
		blas32.Gemm(blas.NoTrans, blas.NoTrans, 1,
			blas32.General{Rows: n, Cols: dim, Stride: dim, Data: emb},
			blas32.General{Rows: dim, Cols: rank, Stride: rank, Data: up},
			0, blas32.General{Rows: n, Cols: rank, Stride: rank, Data: l.items})
	}
	return l, nil
}

// scores writes every catalog item's steering term v . content_i into out (reused when it has
// room) and returns it.
func (l *lowRankSteering) scores(v, out []float32) []float32 {
	if cap(out) < l.n {
		out = make([]float32, l.n)
	}
	out = out[:l.n]
	// the request in the map's rank (64 in exported bundles), pooled: gonum's kernels take it
	// through an interface, so a stack array would move to the heap on every call
	sp := rankVectors.Get().(*[]float32)
	defer rankVectors.Put(sp)
	if cap(*sp) < l.rank {
		*sp = make([]float32, l.rank)
	}
	s := (*sp)[:l.rank]
	blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: l.rank, Cols: l.dim, Stride: l.dim, Data: l.pinv},
		blas32.Vector{N: l.dim, Inc: 1, Data: v}, 0, blas32.Vector{N: l.rank, Inc: 1, Data: s})
	if l.n > 0 {
		blas32.Gemv(blas.NoTrans, 1, blas32.General{Rows: l.n, Cols: l.rank, Stride: l.rank, Data: l.items},
			blas32.Vector{N: l.rank, Inc: 1, Data: s}, 0, blas32.Vector{N: l.n, Inc: 1, Data: out})
	}
	return out
}

// rankVectors holds the steering vectors in the map's rank between requests.
var rankVectors = sync.Pool{New: func() any { return new([]float32) }}
