package ranking

// TopK returns the rows of the k highest scores, best first, ties by the lower row, skipping
// excluded rows (nil: none); fewer than k when fewer rows are left. It is the one top-k of the
// Go tree: the engine's lists, the online learner's candidates and the evaluation's
// baselines all select with it (the export's rank.top_k is its reference).
//
// It reads the slices directly rather than through TopKWhere's functions: two indirect calls
// per row were most of its time over a 100,000-item catalog.
func TopK[F float32 | float64](score []F, excluded []bool, k int) []int {
	if k <= 0 {
		return nil
	}
	if excluded != nil {
		excluded = excluded[:len(score)]
	}
	b := newBest[F](k)
	for i, v := range score {
		if (excluded == nil || !excluded[i]) && b.admits(v) {
			b.insert(i, v)
		}
	}
	return b.rows
}

// TopKBy is TopK over n rows whose scores score(i) computes (each called once).
func TopKBy[F float32 | float64](n int, score func(i int) F, excluded []bool, k int) []int {
	if excluded == nil {
		return TopKWhere(n, score, nil, k)
	}
	return TopKWhere(n, score, func(i int) bool { return excluded[i] }, k)
}

// TopKWhere is TopKBy skipping the rows for which skip returns true (nil: none).
func TopKWhere[F float32 | float64](n int, score func(i int) F, skip func(i int) bool, k int) []int {
	if k <= 0 {
		return nil
	}
	b := newBest[F](k)
	for i := 0; i < n; i++ {
		if skip != nil && skip(i) {
			continue
		}
		if v := score(i); b.admits(v) {
			b.insert(i, v)
		}
	}
	return b.rows
}

// best keeps the k best (row, score) pairs offered so far, sorted by insertion (k is small
// next to the rows scanned). Rows are offered in increasing order, so an equal score never
// displaces a kept row: ties go to the lower row.
type best[F float32 | float64] struct {
	rows []int
	vals []F
	k    int
}

func newBest[F float32 | float64](k int) best[F] {
	return best[F]{rows: make([]int, 0, k+1), vals: make([]F, 0, k+1), k: k}
}

// admits says whether a score would enter the kept k (the test on every row, kept small so
// that it inlines; NaN never enters a full set).
func (b *best[F]) admits(v F) bool { return len(b.rows) < b.k || v > b.vals[b.k-1] }

// insert places row i with score v among the kept, dropping the last when full.
func (b *best[F]) insert(i int, v F) {
	j := len(b.rows)
	if j < b.k {
		b.rows, b.vals = append(b.rows, i), append(b.vals, v)
	} else {
		j = b.k - 1
	}
	for ; j > 0 && v > b.vals[j-1]; j-- {
		b.rows[j], b.vals[j] = b.rows[j-1], b.vals[j-1]
	}
	b.rows[j], b.vals[j] = i, v
}
