package eval

import (
	"math"
	"math/rand/v2"
)

// Group calibration of the popularity correction (the export's debias.choose_group_alphas and
// group_calibration_report): every user group gets its own strength, the largest whose NDCG@10
// on the group's validation users costs the group at most MaxGroupCost of its own accuracy
// without correction.
const (
	MaxGroupCost  = 0.02
	MinGroupUsers = 30
)

// CalibrationAlphas is the grid the export chooses strengths from (debias.ALPHAS).
var CalibrationAlphas = []float64{0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1}

// ChooseGroupAlphas picks each group's strength: ndcg[i][u] is user u's validation NDCG@10 at
// alphas[i] (alphas[0] must be 0; NaN: user not evaluated), group[u] the user's group (""
// unknown). For each group with at least minUsers evaluated users, the largest alpha whose mean
// over the group's users is at least (1 - maxCost) times the group's mean at alpha 0.
func ChooseGroupAlphas(alphas []float64, ndcg [][]float64, group []string, maxCost float64, minUsers int) map[string]float64 {
	if len(alphas) == 0 || alphas[0] != 0 {
		return nil
	}
	idx, _ := groupRows(group, func(u int) bool { return !math.IsNaN(ndcg[0][u]) })
	out := map[string]float64{}
	for g, us := range idx {
		if len(us) < minUsers {
			continue
		}
		base := meanAt(ndcg[0], us)
		best := 0.0
		for i, a := range alphas {
			if meanAt(ndcg[i], us) >= (1-maxCost)*base && a > best {
				best = a
			}
		}
		out[g] = best
	}
	return out
}

// GapChange compares the NDCG@10 gap between the two largest groups (by users, ties by name;
// the first of the pair by name minus the second) under two treatments of the same users:
// base[u] and treated[u] are user u's NDCG@10 under each (NaN: not evaluated). Narrowed is
// |base gap| - |treated gap| (positive: the treatment narrows it); the intervals come from
// resamples paired bootstrap draws of the users within each group (the same draws for both
// treatments), seeded by seed alone.
type GapChange struct {
	Pair       string     `json:"pair"`
	Base       float64    `json:"base_gap"`
	BaseCI     [2]float64 `json:"base_gap_ci95"`
	Treated    float64    `json:"treated_gap"`
	TreatedCI  [2]float64 `json:"treated_gap_ci95"`
	Narrowed   float64    `json:"narrowed"`
	NarrowedCI [2]float64 `json:"narrowed_ci95"`
	// Relative is Narrowed / |Base| (nil when the base gap is 0).
	Relative *float64 `json:"narrowed_relative,omitempty"`
}

// CompareGaps computes GapChange; nil when fewer than two groups have evaluated users.
func CompareGaps(base, treated []float64, group []string, seed uint64, resamples int) *GapChange {
	idx, names := groupRows(group, func(u int) bool { return !math.IsNaN(base[u]) && !math.IsNaN(treated[u]) })
	if len(names) < 2 {
		return nil
	}
	first, second := largestPair(idx, names)
	a, b := idx[first], idx[second]
	resamples = max(resamples, 1)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	gb, gt, nw := make([]float64, resamples), make([]float64, resamples), make([]float64, resamples)
	draw := func(us []int) (mb, mt float64) {
		for range us {
			u := us[rng.IntN(len(us))]
			mb += base[u]
			mt += treated[u]
		}
		return mb / float64(len(us)), mt / float64(len(us))
	}
	for r := range resamples {
		ab, at := draw(a)
		bb, bt := draw(b)
		gb[r], gt[r] = ab-bb, at-bt
		nw[r] = math.Abs(gb[r]) - math.Abs(gt[r])
	}
	c := &GapChange{Pair: first + "-" + second, Base: meanAt(base, a) - meanAt(base, b), BaseCI: interval95(gb),
		Treated: meanAt(treated, a) - meanAt(treated, b), TreatedCI: interval95(gt), NarrowedCI: interval95(nw)}
	c.Narrowed = math.Abs(c.Base) - math.Abs(c.Treated)
	if c.Base != 0 {
		r := c.Narrowed / math.Abs(c.Base)
		c.Relative = &r
	}
	return c
}
