package ranking

import (
	"slices"

	"github.com/viterin/vek/vek32"
)

// TopK returns the rows of the k highest scores, best first, ties by the lower row, skipping
// excluded rows (nil: none); fewer than k when fewer rows are left. It is the one top-k of the
// Go tree: the engine's lists, the online learner's candidates and the evaluation's
// baselines all select with it (the export's rank.top_k is its reference).
//
// It reads the slices directly rather than through TopKWhere's functions: two indirect calls
// per row were most of its time over a 100,000-item catalog.
func TopK[F float32 | float64](score []F, excluded []bool, k int) []int {
	return AppendTopK(nil, score, excluded, k)
}

// AppendTopK is TopK appending the rows to dst: with room for k+1 rows in dst and k at most
// 128 (stackK) it allocates nothing (the rows are built in dst's free capacity, grown when short, and
// the kept scores live on the stack).
func AppendTopK[F float32 | float64](dst []int, score []F, excluded []bool, k int) []int {
	if k <= 0 {
		return dst
	}
	if excluded != nil {
		excluded = excluded[:len(score)]
	}
	var onStack [stackK + 1]F
	dst = slices.Grow(dst, k+1)
	rows, vals := dst[len(dst):len(dst)], keptVals(onStack[:0], k)
	// Once k are kept, a block of float32 scores whose largest is not above the k-th kept
	// score holds no row that could enter (ties go to the lower, earlier row): its largest is
	// taken with vector instructions and the block skipped, which is most blocks of a catalog
	// once the best scores seen are good ones.
	blocked, _ := any(score).([]float32)
	if !vectorized {
		blocked = nil
	}
	for lo := 0; lo < len(score); {
		hi := min(lo+topKBlock, len(score))
		if blocked != nil && len(vals) == k && hi-lo == topKBlock && F(vek32.Max(blocked[lo:hi])) <= vals[k-1] {
			lo = hi
			continue
		}
		for i, v := range score[lo:hi] {
			if (excluded == nil || !excluded[lo+i]) && admits(vals, k, v) {
				rows, vals = insert(rows, vals, k, lo+i, v)
			}
		}
		lo = hi
	}
	return append(dst, rows...)
}

// topKBlock is the number of float32 scores AppendTopK tests at once.
const topKBlock = 256

// TopKBy is TopK over n rows whose scores score(i) computes (each called once).
func TopKBy[F float32 | float64](n int, score func(i int) F, excluded []bool, k int) []int {
	if excluded == nil {
		return TopKWhere(n, score, nil, k)
	}
	return TopKWhere(n, score, func(i int) bool { return excluded[i] }, k)
}

// TopKWhere is TopKBy skipping the rows for which skip returns true (nil: none).
func TopKWhere[F float32 | float64](n int, score func(i int) F, skip func(i int) bool, k int) []int {
	return AppendTopKWhere(nil, n, score, skip, k)
}

// AppendTopKWhere is TopKWhere appending the rows to dst, allocating nothing when AppendTopK
// would not.
func AppendTopKWhere[F float32 | float64](dst []int, n int, score func(i int) F, skip func(i int) bool, k int) []int {
	if k <= 0 {
		return dst
	}
	var onStack [stackK + 1]F
	dst = slices.Grow(dst, k+1)
	rows, vals := dst[len(dst):len(dst)], keptVals(onStack[:0], k)
	for i := 0; i < n; i++ {
		if skip != nil && skip(i) {
			continue
		}
		if v := score(i); admits(vals, k, v) {
			rows, vals = insert(rows, vals, k, i, v)
		}
	}
	return append(dst, rows...)
}

// The kept k (row, score) pairs are two slices sorted by insertion (k is small next to the
// rows scanned), held apart rather than in one struct so that the escape analysis sees the
// scores never leave the call (the rows are the result). Rows are offered in increasing
// order, so an equal score never displaces a kept row: ties go to the lower row.

// stackK is the largest k whose kept scores live on the stack (128: the inverted file's
// reduced scan keeps that many candidates; 1 KB of float64 at most).
const stackK = 128

// keptVals is the scores' working space: stack (capacity stackK+1) when k fits, else new.
func keptVals[F float32 | float64](stack []F, k int) []F {
	if k+1 <= cap(stack) {
		return stack
	}
	return make([]F, 0, k+1)
}

// admits says whether a score would enter the kept k (the test on every row, kept small so
// that it inlines; NaN never enters a full set).
func admits[F float32 | float64](vals []F, k int, v F) bool { return len(vals) < k || v > vals[k-1] }

// insert places row i with score v among the kept, dropping the last when full.
func insert[F float32 | float64](rows []int, vals []F, k, i int, v F) ([]int, []F) {
	j := len(rows)
	if j < k {
		rows, vals = append(rows, i), append(vals, v)
	} else {
		j = k - 1
	}
	for ; j > 0 && v > vals[j-1]; j-- {
		rows[j], vals[j] = rows[j-1], vals[j-1]
	}
	rows[j], vals[j] = i, v
	return rows, vals
}
