package eval

import (
	"slices"
	"sort"
)

// HeadShare is the share of the training interactions the short head holds (HeadItems).
const HeadShare = 0.2

// headSlack is the relative slack of HeadItems' line: popularity (counts over users) sums with
// rounding where counts sum exactly, and the slack lets both stop at the same item when the
// head's counts reach the line exactly. Whole counts that miss the line miss it by at least
// share/total of it, far more than the slack for any realistic total.
const headSlack = 1e-10

// HeadItems marks the short head of a catalog with training counts (or any positive multiple
// of them, such as the popularity counts over users): the most popular items, ties by the
// lower row, taken in order until their summed counts reach share of the total (headSlack),
// the item that crosses the line included. Every other item is the long tail. Nothing is head
// when the total is not positive. It is the export's debias.head_items.
func HeadItems(counts []float64, share float64) []bool {
	order := make([]int, len(counts))
	var total float64
	for i, c := range counts {
		order[i] = i
		total += c
	}
	sort.SliceStable(order, func(a, b int) bool { return counts[order[a]] > counts[order[b]] })
	head := make([]bool, len(counts))
	var acc float64
	for _, i := range order {
		if total <= 0 || acc >= share*total*(1-headSlack) {
			break
		}
		head[i] = true
		acc += counts[i]
	}
	return head
}

// LongTailShare is the share of all the lists' entries that are not in head; 0 without
// entries.
func LongTailShare(tops [][]int, head []bool) float64 {
	var tail, n int
	for _, t := range tops {
		for _, i := range t {
			if !head[i] {
				tail++
			}
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return float64(tail) / float64(n)
}

// Gini is the Gini coefficient of non-negative values: sorted ascending x_1..x_n with sum s,
// sum_i (2i - n - 1) x_i / (n s); 0 for equal values, towards 1 when one value holds all, 0
// when s is not positive. It is the export's debias.gini.
func Gini(x []float64) float64 {
	v := slices.Clone(x)
	slices.Sort(v)
	n := float64(len(v))
	var s, w float64
	for i, x := range v {
		s += x
		w += (2*float64(i+1) - n - 1) * x
	}
	if len(v) == 0 || s <= 0 {
		return 0
	}
	return w / (n * s)
}

// ExposureGini is the Gini coefficient of how many entries of tops each of the n catalog rows
// has (rows never listed count as 0).
func ExposureGini(tops [][]int, n int) float64 {
	listed := make([]float64, n)
	for _, t := range tops {
		for _, i := range t {
			listed[i]++
		}
	}
	return Gini(listed)
}
