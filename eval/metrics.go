package eval

import (
	"math"
	"slices"
	"sort"

	"github.com/llm4rec/llm4rec/engine/ranking"
)

// K is the length of every evaluated list.
const K = 10

// Metrics are the offline metrics of a set of top-K lists, under the export's JSON names
// (evaluate.py metrics).
type Metrics struct {
	// Users is how many users were evaluated (those with a held-out item).
	Users int `json:"users"`
	// HR is the share of users whose held-out item is in their list.
	HR float64 `json:"hr@10"`
	// NDCG is the mean of 1/log2(rank+2) of the held-out item (rank from 0), 0 when absent.
	NDCG float64 `json:"ndcg@10"`
	// Coverage is the number of distinct items in all lists over the catalog size.
	Coverage float64 `json:"coverage@10"`
	// ILD is the intra-list diversity: 1 - the mean cosine of the item embeddings over the
	// pairs of a list, averaged over lists.
	ILD float64 `json:"ild@10"`
	// ARP is the average recommendation popularity: the mean over lists of the mean training
	// popularity (training interactions / users) of their items.
	ARP float64 `json:"arp"`
	// LongTailShare is the share of the lists' entries outside the short head (HeadItems of
	// the training popularity, HeadShare of the interactions).
	LongTailShare float64 `json:"long_tail_share"`
	// ExposureGini is the Gini coefficient of how many lists each catalog item is in (items
	// never listed included).
	ExposureGini float64 `json:"exposure_gini"`
	// NDCGByGender and NDCGByAge are NDCG per group, present with at least two groups.
	NDCGByGender map[string]float64 `json:"ndcg@10_by_gender,omitempty"`
	// GenderGap is the NDCG of the first gender minus the second, in sorted order
	// (GenderGapPair names them, e.g. "F-M").
	GenderGap     *float64           `json:"gender_gap,omitempty"`
	GenderGapPair string             `json:"gender_gap_pair,omitempty"`
	NDCGByAge     map[string]float64 `json:"ndcg@10_by_age,omitempty"`
	// AgeGap is the largest minus the smallest NDCG over age bands.
	AgeGap *float64 `json:"age_gap,omitempty"`
}

// HitRank is the 0-based position of target in top, -1 when absent.
func HitRank(top []int, target int) int {
	return slices.Index(top, target)
}

// NDCGOfRank is 1/log2(rank+2) for a hit at 0-based rank, 0 for a miss (rank < 0).
func NDCGOfRank(rank int) float64 {
	if rank < 0 {
		return 0
	}
	return 1 / math.Log2(float64(rank)+2)
}

// MeanNDCG is the mean NDCG of each list's target; 0 without lists.
func MeanNDCG(tops [][]int, targets []int) float64 {
	if len(tops) == 0 {
		return 0
	}
	var sum float64
	for u, top := range tops {
		sum += NDCGOfRank(HitRank(top, targets[u]))
	}
	return sum / float64(len(tops))
}

// Coverage is the number of distinct items in tops over the catalog size n.
func Coverage(tops [][]int, n int) float64 {
	if n <= 0 {
		return 0
	}
	seen := map[int]bool{}
	for _, t := range tops {
		for _, i := range t {
			seen[i] = true
		}
	}
	return float64(len(seen)) / float64(n)
}

// IntraListDiversity is 1 - the mean cosine similarity over the pairs of distinct positions
// of top, with emb the item embeddings (row-major, dim values per item); 0 for lists shorter
// than 2.
func IntraListDiversity(top []int, emb []float32, dim int) float64 {
	k := len(top)
	if k < 2 {
		return 0
	}
	unit := make([][]float64, k)
	for a, i := range top {
		v := emb[i*dim : (i+1)*dim]
		var n float64
		for _, x := range v {
			n += float64(x) * float64(x)
		}
		n = math.Max(math.Sqrt(n), 1e-12)
		unit[a] = make([]float64, dim)
		for d, x := range v {
			unit[a][d] = float64(x) / n
		}
	}
	var sum float64
	for a := 0; a < k; a++ {
		for b := a + 1; b < k; b++ {
			var dot float64
			for d := range unit[a] {
				dot += unit[a][d] * unit[b][d]
			}
			sum += 2 * dot
		}
	}
	return 1 - sum/float64(k*(k-1))
}

// AverageRecommendationPopularity is the mean popularity of the items of all lists (the mean
// over lists of their mean when lists have equal length).
func AverageRecommendationPopularity(tops [][]int, pop []float64) float64 {
	var sum float64
	n := 0
	for _, t := range tops {
		for _, i := range t {
			sum += pop[i]
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / float64(n)
}

// GroupNDCG averages per-user NDCG by group ("" = unknown, left out) and returns the groups'
// means, or nil when fewer than two groups are present.
func GroupNDCG(ndcg []float64, group []string) map[string]float64 {
	sum, cnt := map[string]float64{}, map[string]int{}
	for u, g := range group {
		if g == "" {
			continue
		}
		sum[g] += ndcg[u]
		cnt[g]++
	}
	if len(sum) < 2 {
		return nil
	}
	out := make(map[string]float64, len(sum))
	for g, s := range sum {
		out[g] = s / float64(cnt[g])
	}
	return out
}

// GenderGap is the first gender's NDCG minus the second's, in sorted order, with their pair
// name ("F-M").
func GenderGap(by map[string]float64) (float64, string) {
	keys := make([]string, 0, len(by))
	for k := range by {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return by[keys[0]] - by[keys[1]], keys[0] + "-" + keys[1]
}

// SpreadGap is the largest minus the smallest value.
func SpreadGap(by map[string]float64) float64 {
	lo, hi := math.Inf(1), math.Inf(-1)
	for _, v := range by {
		lo, hi = math.Min(lo, v), math.Max(hi, v)
	}
	return hi - lo
}

// ListMetrics computes every metric of the lists tops of users with held-out items targets
// (-1: the user is skipped); emb are the item embeddings for diversity, pop the items'
// training popularity (its length is the catalog size; LongTailShare's short head is drawn
// from it, as from the counts it is a multiple of), gender and age each user's group (""
// unknown; nil: no groups).
func ListMetrics(tops [][]int, targets []int, emb []float32, dim int, pop []float64, gender, age []string) Metrics {
	var kept [][]int
	var ndcg []float64
	var g, a []string
	var hits, ild float64
	for u, top := range tops {
		if targets[u] < 0 {
			continue
		}
		kept = append(kept, top)
		r := HitRank(top, targets[u])
		if r >= 0 {
			hits++
		}
		ndcg = append(ndcg, NDCGOfRank(r))
		ild += IntraListDiversity(top, emb, dim)
		if gender != nil {
			g = append(g, gender[u])
		}
		if age != nil {
			a = append(a, age[u])
		}
	}
	m := Metrics{Users: len(kept)}
	if len(kept) == 0 {
		return m
	}
	n := float64(len(kept))
	var sum float64
	for _, v := range ndcg {
		sum += v
	}
	m.HR, m.NDCG, m.ILD = hits/n, sum/n, ild/n
	m.Coverage = Coverage(kept, len(pop))
	m.ARP = AverageRecommendationPopularity(kept, pop)
	m.LongTailShare = LongTailShare(kept, HeadItems(pop, HeadShare))
	m.ExposureGini = ExposureGini(kept, len(pop))
	if by := GroupNDCG(ndcg, g); by != nil {
		gap, pair := GenderGap(by)
		m.NDCGByGender, m.GenderGap, m.GenderGapPair = by, &gap, pair
	}
	if by := GroupNDCG(ndcg, a); by != nil {
		gap := SpreadGap(by)
		m.NDCGByAge, m.AgeGap = by, &gap
	}
	return m
}

// TopK returns the k rows with the highest score, ties by the lower row, skipping excluded
// rows (nil: none): engine/ranking.TopK, the engine's own selection. It is the export's
// rank.top_k but for one thing: when fewer than k rows are left it returns them all, where
// the export fills the list with excluded rows.
func TopK(score []float64, excluded []bool, k int) []int { return ranking.TopK(score, excluded, k) }

// Tops ranks n catalog rows for every user, k each (TopK): score fills out (length n) with
// user u's scores, and the user's TestHistory is excluded.
func Tops(users []SplitUser, n, k int, score func(u int, out []float64)) [][]int {
	excl := make([]bool, n)
	out := make([]float64, n)
	tops := make([][]int, len(users))
	for u, su := range users {
		score(u, out)
		h := su.TestHistory()
		mark(excl, h, true)
		tops[u] = TopK(out, excl, k)
		mark(excl, h, false)
	}
	return tops
}

// mark sets b[r] to v for every row r of rows.
func mark(b []bool, rows []int, v bool) {
	for _, r := range rows {
		b[r] = v
	}
}
