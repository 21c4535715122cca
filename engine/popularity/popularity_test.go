package popularity

import (
	"math"
	"slices"
	"testing"
	"time"
)

func TestPropensityAndReweight(t *testing.T) {
	s := New(4, Config{Smoothing: 1, ClipMin: 0.01})
	t0 := time.Unix(1e9, 0)
	for i := 0; i < 6; i++ {
		s.Observe(0, t0, nil) // item 0 is popular
	}
	s.Observe(1, t0, nil)
	// p0 = (6+1)/(7+4) ; p3 = (0+1)/11
	if got, want := s.Propensity(0), 7.0/11; math.Abs(got-want) > 1e-12 {
		t.Fatalf("p0 %v want %v", got, want)
	}
	if got, want := s.Propensity(3), 1.0/11; math.Abs(got-want) > 1e-12 {
		t.Fatalf("p3 %v want %v", got, want)
	}
	items := []int{0, 3}
	base := []float32{2, 1.5} // the popular item leads before reweighting
	for _, alpha := range []float64{0, 0.5, 1} {
		sc := slices.Clone(base)
		s.Reweight(items, sc, alpha)
		want0 := float64(base[0]) - alpha*math.Log(7.0/11)
		if math.Abs(float64(sc[0])-want0) > 1e-5 {
			t.Fatalf("alpha %v: score %v want %v", alpha, sc[0], want0)
		}
		if alpha == 1 && sc[0] >= sc[1] {
			t.Fatalf("alpha 1 should move the popular item below: %v", sc)
		}
		if alpha == 0 && !slices.Equal(sc, base) {
			t.Fatal("alpha 0 must leave scores unchanged")
		}
	}
	// clipping: with many interactions elsewhere an unseen item's propensity stays >= ClipMin
	for i := 0; i < 10000; i++ {
		s.Observe(1, t0, nil)
	}
	if s.Propensity(3) != 0.01 {
		t.Fatalf("clipped propensity %v", s.Propensity(3))
	}
	if err := s.Observe(9, t0, nil); err == nil {
		t.Fatal("out-of-range item accepted")
	}
}

func TestTrendingDecays(t *testing.T) {
	s := New(3, Config{HalfLife: time.Hour})
	t0 := time.Unix(1e9, 0)
	for i := 0; i < 4; i++ {
		s.Observe(0, t0, nil) // 4 old interactions
	}
	for i := 0; i < 2; i++ {
		s.Observe(1, t0.Add(3*time.Hour), nil) // 2 recent ones weigh 2*8 = 16 > 4
	}
	if got := s.Trending(5); !slices.Equal(got, []int{1, 0}) {
		t.Fatalf("trending %v", got)
	}
	// a year of hourly half-lives later the scores stay finite and the newest leads
	s.Observe(2, t0.Add(365*24*time.Hour), nil)
	if got := s.Trending(1); !slices.Equal(got, []int{2}) {
		t.Fatalf("trending after a year %v", got)
	}
}

func TestCoOccurrenceWindow(t *testing.T) {
	s := New(5, Config{CoWindow: 2})
	t0 := time.Unix(1e9, 0)
	s.Observe(4, t0, []int{0, 1, 2}) // only the last 2 earlier items count
	if s.CoOccurrence(4, 2) != 1 || s.CoOccurrence(1, 4) != 1 || s.CoOccurrence(4, 0) != 0 {
		t.Fatalf("co-occurrence %v %v %v", s.CoOccurrence(4, 2), s.CoOccurrence(1, 4), s.CoOccurrence(4, 0))
	}
}
