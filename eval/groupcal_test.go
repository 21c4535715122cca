package eval

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestChooseGroupAlphas(t *testing.T) {
	// F loses nothing up to 0.3 and 20% beyond; M loses 1% at 0.1 and 5% at 0.3; X is too small
	alphas := []float64{0, 0.1, 0.3, 0.5}
	f := []float64{0.10, 0.10, 0.10, 0.08}
	m := []float64{0.20, 0.198, 0.19, 0.15}
	var group []string
	ndcg := make([][]float64, len(alphas))
	for u := range 115 {
		g := "F"
		switch {
		case u >= 110:
			g = ""
		case u >= 100:
			g = "X"
		case u >= 50:
			g = "M"
		}
		group = append(group, g)
		for i := range alphas {
			v := 0.3
			switch g {
			case "F":
				v = f[i]
			case "M":
				v = m[i]
			}
			ndcg[i] = append(ndcg[i], v)
		}
	}
	ndcg[0][0] = math.NaN() // not evaluated
	got := ChooseGroupAlphas(alphas, ndcg, group, MaxGroupCost, MinGroupUsers)
	if len(got) != 2 || got["F"] != 0.3 || got["M"] != 0.1 {
		t.Errorf("got %v, want F 0.3, M 0.1 (X too small)", got)
	}
	if got := ChooseGroupAlphas(alphas, ndcg, group, 0, MinGroupUsers); got["M"] != 0 || got["F"] != 0.3 {
		t.Errorf("no cost allowed: %v", got)
	}
	if got := ChooseGroupAlphas(alphas, ndcg, group, MaxGroupCost, 5); got["X"] != 0.5 {
		t.Errorf("X with 10 users: %v", got)
	}
	if ChooseGroupAlphas([]float64{0.1}, ndcg[:1], group, MaxGroupCost, 1) != nil {
		t.Error("a grid without alpha 0 has no baseline")
	}
}

func TestCompareGapsFindsARealNarrowingAndNotANullOne(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	nf, nm := 600, 900
	var group []string
	var base, treated, same []float64
	for u := range nf + nm {
		g, b, tr := "F", 0.10, 0.13
		if u >= nf {
			g, b, tr = "M", 0.14, 0.13
		}
		e := rng.NormFloat64() * 0.02
		group = append(group, g)
		base, treated = append(base, b+e), append(treated, tr+e)
		same = append(same, b+e+rng.NormFloat64()*0.001)
	}
	c := CompareGaps(base, treated, group, 0, 2000)
	if c.Pair != "F-M" || math.Abs(c.Base+0.04) > 0.005 || math.Abs(c.Treated) > 0.005 {
		t.Fatalf("%+v", c)
	}
	if c.NarrowedCI[0] <= 0 || !(c.NarrowedCI[0] < c.Narrowed && c.Narrowed < c.NarrowedCI[1]) || *c.Relative < 0.8 {
		t.Errorf("a 0.04 narrowing: %+v", c)
	}
	if c := CompareGaps(base, same, group, 0, 2000); !(c.NarrowedCI[0] < 0 && c.NarrowedCI[1] > 0) {
		t.Errorf("no change: the interval must cover 0: %+v", c)
	}
	if CompareGaps(base, treated, make([]string, len(base)), 0, 10) != nil {
		t.Error("no groups: nil")
	}
}
