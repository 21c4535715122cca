package eval

import (
	"cmp"
	"math"
	"math/rand/v2"
	"slices"
)

// Resamples is how many bootstrap resamples the group intervals draw; GroupSeed seeds them.
const (
	Resamples = 2000
	GroupSeed = 0
)

// GroupFigures are one user group's NDCG@10 and average recommendation popularity with their
// bootstrap 95% intervals, under the export's JSON names (debias.group_report).
type GroupFigures struct {
	Users  int        `json:"users"`
	NDCG   float64    `json:"ndcg@10"`
	NDCGCI [2]float64 `json:"ndcg@10_ci95"`
	ARP    float64    `json:"arp"`
	ARPCI  [2]float64 `json:"arp_ci95"`
}

// GroupGap is the first group's mean minus the second's (Pair names them, "F-M") with its
// bootstrap 95% interval.
type GroupGap struct {
	Pair string     `json:"pair"`
	Gap  float64    `json:"gap"`
	CI   [2]float64 `json:"ci95"`
}

// GroupReport holds the figures of every group and the gaps between the two largest groups
// (by users, ties by name; the first of the pair by name is the one subtracted from).
type GroupReport struct {
	ByGroup map[string]GroupFigures `json:"by_group"`
	NDCGGap GroupGap                `json:"ndcg@10_gap"`
	ARPGap  GroupGap                `json:"arp_gap"`
}

// PerUser returns each list's NDCG of its target and mean popularity of its items (pop: the
// training popularity of every catalog row); users whose target is negative get NaN in both.
func PerUser(tops [][]int, targets []int, pop []float64) (ndcg, arp []float64) {
	ndcg, arp = make([]float64, len(tops)), make([]float64, len(tops))
	for u, top := range tops {
		if targets[u] < 0 {
			ndcg[u], arp[u] = math.NaN(), math.NaN()
			continue
		}
		ndcg[u] = NDCGOfRank(HitRank(top, targets[u]))
		arp[u] = AverageRecommendationPopularity([][]int{top}, pop)
	}
	return ndcg, arp
}

// GroupIntervals sums up per-user NDCG and ARP by the users' group (group[u]; "" unknown
// and users whose NDCG is NaN are left out): each group's means with percentile 95%
// intervals from resamples bootstrap draws of its users (with replacement, within the group;
// the same draws for NDCG and ARP), and the gap between the two largest groups, the
// interval of the gap from the differences of the groups' resampled means. The draws come
// from seed alone, groups in name order, so that a report is reproducible. nil when fewer
// than two groups are present. It is the export's debias.group_report for one seed (its
// random draws are not numpy's).
func GroupIntervals(ndcg, arp []float64, group []string, seed uint64, resamples int) *GroupReport {
	idx, names := groupRows(group, func(u int) bool { return !math.IsNaN(ndcg[u]) })
	if len(names) < 2 {
		return nil
	}
	resamples = max(resamples, 1)
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	rep := &GroupReport{ByGroup: make(map[string]GroupFigures, len(names))}
	bootN, bootA := map[string][]float64{}, map[string][]float64{}
	for _, g := range names {
		us := idx[g]
		bn, ba := make([]float64, resamples), make([]float64, resamples)
		for r := range resamples {
			var sn, sa float64
			for range us {
				u := us[rng.IntN(len(us))]
				sn += ndcg[u]
				sa += arp[u]
			}
			bn[r], ba[r] = sn/float64(len(us)), sa/float64(len(us))
		}
		bootN[g], bootA[g] = bn, ba
		rep.ByGroup[g] = GroupFigures{Users: len(us), NDCG: meanAt(ndcg, us), NDCGCI: interval95(bn), ARP: meanAt(arp, us),
			ARPCI: interval95(ba)}
	}
	a, b := largestPair(idx, names)
	gap := func(x []float64, boot map[string][]float64) GroupGap {
		d := make([]float64, resamples)
		for r := range d {
			d[r] = boot[a][r] - boot[b][r]
		}
		return GroupGap{Pair: a + "-" + b, Gap: meanAt(x, idx[a]) - meanAt(x, idx[b]), CI: interval95(d)}
	}
	rep.NDCGGap, rep.ARPGap = gap(ndcg, bootN), gap(arp, bootA)
	return rep
}

// groupRows indexes the users by group (group[u]; "" unknown and users keep rejects are left
// out) and returns the groups' names in order.
func groupRows(group []string, keep func(u int) bool) (map[string][]int, []string) {
	idx := map[string][]int{}
	for u, g := range group {
		if g != "" && keep(u) {
			idx[g] = append(idx[g], u)
		}
	}
	names := make([]string, 0, len(idx))
	for g := range idx {
		names = append(names, g)
	}
	slices.Sort(names)
	return idx, names
}

// largestPair is the two groups with the most users (ties by name), in name order: the first
// is the one a gap subtracts from.
func largestPair(idx map[string][]int, names []string) (a, b string) {
	big := slices.Clone(names)
	slices.SortStableFunc(big, func(a, b string) int { return cmp.Compare(len(idx[b]), len(idx[a])) })
	pair := big[:2]
	slices.Sort(pair)
	return pair[0], pair[1]
}

// meanAt is the mean of x over the rows rows.
func meanAt(x []float64, rows []int) float64 {
	var s float64
	for _, r := range rows {
		s += x[r]
	}
	return s / float64(len(rows))
}

// interval95 is the 2.5th and 97.5th percentiles of v (percentile).
func interval95(v []float64) [2]float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	return [2]float64{percentile(s, 2.5), percentile(s, 97.5)}
}

// percentile is the q-th percentile (0..100) of sorted values, interpolated linearly between
// the two nearest ranks as numpy.percentile does by default; NaN without values.
func percentile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	pos := q / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(pos))
	if lo >= len(sorted)-1 {
		return sorted[len(sorted)-1]
	}
	if lo < 0 {
		return sorted[0]
	}
	f := pos - float64(lo)
	return sorted[lo] + f*(sorted[lo+1]-sorted[lo])
}
