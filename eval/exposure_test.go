package eval

import (
	"math"
	"slices"
	"testing"
)

// The export's cases (export/tests/test_debias.py).
func TestHeadItems(t *testing.T) {
	// 10 of 20 crosses the line of 4 at once
	if got := HeadItems([]float64{1, 10, 5, 3, 1}, HeadShare); !slices.Equal(got, []bool{false, true, false, false, false}) {
		t.Errorf("head of [1 10 5 3 1]: %v", got)
	}
	// 2 of 10 reaches 2: ties by the lower row
	if got := HeadItems([]float64{2, 2, 2, 2, 2}, HeadShare); !slices.Equal(got, []bool{true, false, false, false, false}) {
		t.Errorf("head of [2 2 2 2 2]: %v", got)
	}
	// a multiple of the counts (popularity over users) has the same head
	if got := HeadItems([]float64{0.1, 1, 0.5, 0.3, 0.1}, HeadShare); !slices.Equal(got, []bool{false, true, false, false, false}) {
		t.Errorf("head of the popularity: %v", got)
	}
	// half of 20: 8, then the first 3 (by row) crosses 10 and is in, the other 3s are not
	if got := HeadItems([]float64{3, 1, 3, 2, 3, 8}, 0.5); !slices.Equal(got, []bool{true, false, false, false, false, true}) {
		t.Errorf("head at 0.5: %v", got)
	}
	// popularity draws the line where the counts do when the head holds exactly the share: 5+5+5+4
	// of 38 is 19, a half; as counts over 943 users the sum rounds on either side of it
	counts := []float64{5, 3, 5, 0, 2, 5, 4, 2, 2, 2, 3, 1, 4, 0}
	want := []bool{true, false, true, false, false, true, true, false, false, false, false, false, false, false}
	pop := make([]float64, len(counts))
	for i, c := range counts {
		pop[i] = c / 943
	}
	if a, b := HeadItems(counts, 0.5), HeadItems(pop, 0.5); !slices.Equal(a, want) || !slices.Equal(b, want) {
		t.Errorf("head at exactly half: counts %v, popularity %v, want %v", a, b, want)
	}
	if got := HeadItems([]float64{0, 0, 0}, HeadShare); slices.Contains(got, true) {
		t.Errorf("head without interactions: %v", got)
	}
}

func TestGini(t *testing.T) {
	if g := Gini([]float64{1, 1, 1, 1, 1, 1, 1}); math.Abs(g) > 1e-12 {
		t.Errorf("gini of ones %v", g)
	}
	if g := Gini([]float64{0, 0, 0, 5}); !near(g, 0.75) {
		t.Errorf("gini of [0 0 0 5] %v", g)
	}
	if g := Gini([]float64{5, 0, 0, 0}); !near(g, 0.75) {
		t.Errorf("gini of [5 0 0 0] (unsorted) %v", g)
	}
	if Gini([]float64{0, 0, 0}) != 0 || Gini(nil) != 0 {
		t.Error("gini without a positive sum")
	}
	// [1 2 3]: (-2*1 + 0*2 + 2*3) / (3*6)
	if g := Gini([]float64{3, 1, 2}); !near(g, 4.0/18) {
		t.Errorf("gini of [1 2 3] %v", g)
	}
}

func TestExposureOfLists(t *testing.T) {
	counts := []float64{1, 10, 5, 3, 1} // head: row 1
	tops := [][]int{{1, 2}, {1, 3}, {4, 2}}
	if s := LongTailShare(tops, HeadItems(counts, HeadShare)); !near(s, 4.0/6) {
		t.Errorf("long-tail share %v, want 4/6", s)
	}
	// listed: [0 2 2 1 1] -> sorted [0 1 1 2 2], sum 6, n 5: (-4*0 - 2*1 + 0*1 + 2*2 + 4*2) / 30
	if g := ExposureGini(tops, 5); !near(g, 10.0/30) {
		t.Errorf("exposure gini %v, want 1/3", g)
	}
	if LongTailShare(nil, nil) != 0 || ExposureGini(nil, 3) != 0 {
		t.Error("exposure of no lists")
	}
	// ListMetrics computes both over the users with a held-out item, head from the popularity
	pop := make([]float64, len(counts))
	for i, c := range counts {
		pop[i] = c / 4
	}
	emb := []float32{1, 0, 0, 1, 1, 1, 1, 0, 0, 1}
	m := ListMetrics(append(tops, []int{0, 1}), []int{2, 3, 0, -1}, emb, 2, pop, nil, nil)
	if !near(m.LongTailShare, 4.0/6) || !near(m.ExposureGini, 10.0/30) {
		t.Errorf("ListMetrics: long tail %v, gini %v", m.LongTailShare, m.ExposureGini)
	}
}
