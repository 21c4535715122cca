package eval

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
)

// Synthetic users with a known gap: F's NDCG is 0.05 above M's, ARP the same for all.
func TestGroupIntervalsCoverAKnownGap(t *testing.T) {
	const users = 2000
	rng := rand.New(rand.NewPCG(2, 0))
	ndcg, arp, group := make([]float64, users), make([]float64, users), make([]string, users)
	for u := range users {
		base := 0.10
		group[u] = "M"
		if u%3 == 0 {
			base, group[u] = 0.15, "F"
		}
		ndcg[u] = min(max(base+0.05*rng.NormFloat64(), 0), 1)
		arp[u] = 0.2
	}
	group[5] = ""        // unknown: left out
	ndcg[7] = math.NaN() // not evaluated: left out
	rep := GroupIntervals(ndcg, arp, group, GroupSeed, Resamples)
	if rep == nil {
		t.Fatal("no report for two groups")
	}
	g := rep.NDCGGap
	if g.Pair != "F-M" || !(g.CI[0] < g.Gap && g.Gap < g.CI[1]) || !(g.CI[0] < 0.05 && 0.05 < g.CI[1]) || g.CI[0] <= 0 {
		t.Errorf("NDCG gap %+v: want pair F-M, an interval around the gap covering 0.05 and excluding 0", g)
	}
	if g.CI[0] < 0.03 || g.CI[1] > 0.07 {
		t.Errorf("NDCG gap interval %v wider than expected for 2000 users", g.CI)
	}
	if a := rep.ARPGap; math.Abs(a.Gap) > 1e-12 || math.Abs(a.CI[0]) > 1e-12 || math.Abs(a.CI[1]) > 1e-12 {
		t.Errorf("ARP gap %+v, want 0", a)
	}
	f, m := rep.ByGroup["F"], rep.ByGroup["M"]
	if f.Users+m.Users != users-2 || len(rep.ByGroup) != 2 {
		t.Errorf("users %d + %d, want %d", f.Users, m.Users, users-2)
	}
	for name, x := range rep.ByGroup {
		if !(x.NDCGCI[0] < x.NDCG && x.NDCG < x.NDCGCI[1]) || !near(x.ARP, 0.2) {
			t.Errorf("%s: %+v", name, x)
		}
	}
	if again := GroupIntervals(ndcg, arp, group, GroupSeed, Resamples); !reflect.DeepEqual(again, rep) {
		t.Error("the same seed gives another report")
	}
	// no gap: the interval covers 0
	for u := range ndcg {
		ndcg[u] = 0.1 + 0.05*rng.NormFloat64()
	}
	if g := GroupIntervals(ndcg, arp, group, GroupSeed, Resamples).NDCGGap; !(g.CI[0] < 0 && 0 < g.CI[1]) {
		t.Errorf("interval %v of a null gap excludes 0", g.CI)
	}
	if GroupIntervals(ndcg, arp, make([]string, users), GroupSeed, Resamples) != nil {
		t.Error("a report without groups")
	}
}

// The gap is between the two largest groups, named in sorted order.
func TestGroupIntervalsTwoLargest(t *testing.T) {
	group := []string{"45+", "<25", "<25", "<25", "25-34", "25-34", "35-44"}
	ndcg := []float64{1, 0.2, 0.4, 0.6, 0.1, 0.3, 0}
	arp := []float64{0, 1, 1, 1, 2, 4, 0}
	rep := GroupIntervals(ndcg, arp, group, 1, 200)
	if rep.NDCGGap.Pair != "25-34-<25" || !near(rep.NDCGGap.Gap, 0.2-0.4) || !near(rep.ARPGap.Gap, 3-1) || len(rep.ByGroup) != 4 {
		t.Errorf("report %+v", rep)
	}
	if x := rep.ByGroup["45+"]; x.Users != 1 || x.NDCGCI != [2]float64{1, 1} {
		t.Errorf("one-user group %+v", x)
	}
}

func TestPerUserAndPercentile(t *testing.T) {
	nd, arp := PerUser([][]int{{0, 1}, {2, 3}, {1, 0}}, []int{1, 0, -1}, []float64{0.1, 0.2, 0.3, 0.4})
	if !near(nd[0], 1/math.Log2(3)) || nd[1] != 0 || !math.IsNaN(nd[2]) || !near(arp[0], 0.15) || !near(arp[1], 0.35) || !math.IsNaN(arp[2]) {
		t.Errorf("per user %v %v", nd, arp)
	}
	s := []float64{1, 2, 3, 4, 5}
	if percentile(s, 0) != 1 || percentile(s, 100) != 5 || !near(percentile(s, 2.5), 1.1) || !near(percentile(s, 97.5), 4.9) ||
		!math.IsNaN(percentile(nil, 50)) {
		t.Error("percentile")
	}
}
