package eval

import (
	"math/rand/v2"
	"slices"

	"github.com/llm4rec/llm4rec/engine/recommend"
)

// The export's steering evaluation (export/llm4rec_export/steering.py): which users it asks
// for, and how much of a list is in the asked category.

// SteeringUsers returns the positions in users, ascending, of at most n users drawn with seed
// among those with a held-out item and at least history items before it.
func SteeringUsers(users []SplitUser, history, n int, seed uint64) []int {
	var cand []int
	for u, su := range users {
		if su.Test >= 0 && len(su.TestHistory()) >= history {
			cand = append(cand, u)
		}
	}
	rng := rand.New(rand.NewPCG(seed, 0x57ee))
	rng.Shuffle(len(cand), func(i, j int) { cand[i], cand[j] = cand[j], cand[i] })
	picked := cand[:min(n, len(cand))]
	slices.Sort(picked)
	return picked
}

// InCategory says for every catalog row whether the item is in category c.
func InCategory(items []recommend.Item, c string) []bool {
	in := make([]bool, len(items))
	for i, it := range items {
		in[i] = slices.Contains(it.Categories, c)
	}
	return in
}

// CategoryPrecision is the mean over lists of the share of each list's items for which in is
// true (an empty list counts 0); 0 without lists.
func CategoryPrecision(tops [][]int, in []bool) float64 {
	if len(tops) == 0 {
		return 0
	}
	var sum float64
	for _, top := range tops {
		if len(top) == 0 {
			continue
		}
		hits := 0
		for _, r := range top {
			if in[r] {
				hits++
			}
		}
		sum += float64(hits) / float64(len(top))
	}
	return sum / float64(len(tops))
}
