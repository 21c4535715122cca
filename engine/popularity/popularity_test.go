package popularity

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/viterin/vek"
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

// Two catalogs bound to one Live in different orders read the same counts, trending and
// co-occurrence by id; what one observes the other sees at once, and each keeps its own seeds.
func TestLiveSharedByCatalogs(t *testing.T) {
	live := NewLive(Config{})
	t0 := time.Unix(1e9, 0)
	live.Observe("b", t0, nil) // before any catalog knows "b"
	a := live.Bind([]string{"a", "b", "c"}, Config{Smoothing: 1})
	z := live.Bind([]string{"c", "b", "a", "d"}, Config{Smoothing: 1})
	a.Seed(0, 10)
	if a.Count(1) != 1 || z.Count(1) != 1 {
		t.Fatalf("count of b: %v %v", a.Count(1), z.Count(1))
	}
	before := z.Propensity(0)
	if err := a.Observe(2, t0.Add(time.Hour), []int{0, 1}); err != nil { // c, after a and b
		t.Fatal(err)
	}
	if z.Count(0) != 1 || z.CoOccurrence(0, 2) != 1 || z.CoOccurrence(1, 0) != 1 || live.CoOccurrence("a", "c") != 1 {
		t.Fatalf("z sees c %v, c~a %v, b~c %v", z.Count(0), z.CoOccurrence(0, 2), z.CoOccurrence(1, 0))
	}
	if z.Propensity(0) <= before {
		t.Fatalf("z's propensity of c did not move: %v -> %v", before, z.Propensity(0))
	}
	if got := z.Trending(2); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("z trending %v, want c then b", got)
	}
	if a.Count(0) != 10 || z.Count(2) != 0 {
		t.Fatalf("seeds leaked: a's a %v, z's a %v", a.Count(0), z.Count(2))
	}
	// p = (count + 1) / (catalog total + n): a's total is 10 seeded + b + c
	if got, want := a.Propensity(0), 11.0/(12+3); math.Abs(got-want) > 1e-12 {
		t.Fatalf("a's propensity of a %v, want %v", got, want)
	}
	if got, want := z.Propensity(3), 1.0/(2+4); math.Abs(got-want) > 1e-12 {
		t.Fatalf("z's propensity of d %v, want %v", got, want)
	}
	lp := []float32{0, 0, 0, 0}
	z.ReweightAll(lp, 1)
	if want := -math.Log(2.0 / 6); math.Abs(float64(lp[0])-want) > 1e-6 {
		t.Fatalf("z reweights c by %v, want %v", lp[0], want)
	}
}

// Observations through the Live and through views race with reads of every kind; counts add
// up and the propensity cache follows the last change.
func TestLiveConcurrent(t *testing.T) {
	live := NewLive(Config{})
	ids := []string{"a", "b", "c", "d"}
	a := live.Bind(ids, Config{})
	z := live.Bind([]string{"d", "c", "b", "a"}, Config{})
	t0 := time.Unix(1e9, 0)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 200 {
				if w%2 == 0 {
					live.Observe(ids[i%4], t0.Add(time.Duration(i)*time.Minute), ids[:i%4])
				} else {
					a.Observe(i%4, t0, []int{(i + 1) % 4})
				}
				sc := make([]float32, 4)
				z.ReweightAll(sc, 1)
				_ = z.Propensity(i%4) + a.CoOccurrence(0, 1)
				_ = z.Trending(2)
			}
		})
	}
	wg.Wait()
	var total float64
	for r := range 4 {
		total += z.Count(r)
	}
	if total != 800 {
		t.Fatalf("%v interactions counted, want 800", total)
	}
	if got, want := z.Propensity(0), (z.Count(0)+1)/(800+4); math.Abs(got-want) > 1e-12 {
		t.Fatalf("propensity %v, want %v", got, want)
	}
}

// Rows past the bound catalog (items added to a live catalog) have no statistics: counts and
// co-occurrence 0, and LogPropensityOf(0) is what an item without interactions weighs.
func TestRowsOutsideTheCatalog(t *testing.T) {
	s := NewLive(Config{}).Bind([]string{"a", "b", "c"}, Config{Smoothing: 1, ClipMin: 1e-6})
	s.Seed(0, 10)
	s.Seed(1, 5)
	if err := s.Observe(1, time.Now(), []int{0}); err != nil {
		t.Fatal(err)
	}
	if s.Count(3) != 0 || s.Count(-1) != 0 || s.CoOccurrence(0, 3) != 0 || s.CoOccurrence(3, 0) != 0 {
		t.Fatalf("outside rows: count %v, co-occurrence %v", s.Count(3), s.CoOccurrence(0, 3))
	}
	if got, want := s.LogPropensityOf(0), math.Log(s.Propensity(2)); math.Abs(got-want) > 1e-12 {
		t.Fatalf("LogPropensityOf(0) = %v, want item c's (no interactions) %v", got, want)
	}
	if s.LogPropensityOf(6) <= s.LogPropensityOf(0) {
		t.Fatal("LogPropensityOf does not grow with the count")
	}
}

// The trend feature is log(1 + n * share of the summed trending scores): 0 everywhere before
// any interaction and for items no one chose, larger for what was chosen more and more lately.
func TestTrendFeature(t *testing.T) {
	live := NewLive(Config{HalfLife: time.Hour})
	s := live.Bind([]string{"a", "b", "c", "d"}, Config{})
	f := s.TrendFeature()
	if len(f) != 4 || slices.ContainsFunc(f, func(v float32) bool { return v != 0 }) {
		t.Fatalf("feature %v before any interaction", f)
	}
	t0 := time.Unix(1_000_000, 0)
	live.Observe("a", t0, nil)
	live.Observe("b", t0.Add(2*time.Hour), nil) // two half-lives later: weighs 4x a's
	f = s.TrendFeature()
	want := []float64{math.Log1p(4 * 1.0 / 5), math.Log1p(4 * 4.0 / 5), 0, 0}
	for i := range f {
		if math.Abs(float64(f[i])-want[i]) > 1e-6 {
			t.Fatalf("feature %v, want %v", f, want)
		}
	}
}

// ReweightAll's blocks give exactly the per-item formula, with and without vector
// instructions, across a catalog of several blocks.
func TestReweightAllMatchesTheFormula(t *testing.T) {
	const n = 3*reweightBlock + 77
	s := New(n, Config{})
	for i := 0; i < n; i++ {
		for r := 0; r < i%13; r++ {
			if err := s.Observe(i, time.Time{}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(t *testing.T) {
		for _, alpha := range []float64{0.3, 1, -0.7} {
			got := make([]float32, n)
			want := make([]float32, n)
			for i := range got {
				got[i] = float32(i%7) - 3.25
				want[i] = got[i]
			}
			s.ReweightAll(got, alpha)
			for i := range want {
				want[i] -= float32(alpha * math.Log(s.Propensity(i)))
			}
			if !slices.Equal(got, want) {
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("alpha %v: item %d: %v, formula %v", alpha, i, got[i], want[i])
					}
				}
			}
		}
	}
	if !vek.Info().Acceleration {
		check(t)
		return
	}
	t.Run("vectorized", check)
	t.Run("plain Go", func(t *testing.T) {
		vek.SetAcceleration(false)
		defer vek.SetAcceleration(true)
		check(t)
	})
}
