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
	rows := make([]int, 0, k+1)
	vals := make([]F, 0, k+1)
	for i, v := range score {
		if excluded != nil && excluded[i] {
			continue
		}
		// the same insertion as TopKWhere's
		if len(rows) == k && !(v > vals[k-1]) {
			continue
		}
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
	}
	return rows
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
	// the best so far, sorted by insertion (k is small next to n)
	rows := make([]int, 0, k+1)
	vals := make([]F, 0, k+1)
	for i := 0; i < n; i++ {
		if skip != nil && skip(i) {
			continue
		}
		v := score(i)
		// rows are visited in increasing order, so an equal score never displaces a kept row
		if len(rows) == k && !(v > vals[k-1]) {
			continue
		}
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
	}
	return rows
}
