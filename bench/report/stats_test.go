package report

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPercentileNearestRank(t *testing.T) {
	// the nearest-rank example of the textbook definition
	xs := []float64{15, 20, 35, 40, 50}
	for _, c := range []struct{ p, want float64 }{
		{0, 15}, {5, 15}, {20, 15}, {30, 20}, {40, 20}, {50, 35}, {90, 50}, {100, 50}, {-3, 15}, {250, 50},
	} {
		if got := Percentile(xs, c.p); got != c.want {
			t.Errorf("Percentile(%v, %v) = %v, want %v", xs, c.p, got, c.want)
		}
	}
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(i + 1)
	}
	for _, c := range []struct{ p, want float64 }{{50, 50}, {90, 90}, {99, 99}, {99.5, 100}, {1, 1}} {
		if got := Percentile(hundred, c.p); got != c.want {
			t.Errorf("Percentile(1..100, %v) = %v, want %v", c.p, got, c.want)
		}
	}
	if got := Percentile(nil, 50); got != 0 {
		t.Errorf("Percentile(nil) = %v, want 0", got)
	}
}

func TestSummarize(t *testing.T) {
	lat := []time.Duration{4 * time.Millisecond, 1 * time.Millisecond, 3 * time.Millisecond, 2 * time.Millisecond}
	s := Summarize(lat)
	if s.Count != 4 || s.Min != 1 || s.Max != 4 || s.Mean != 2.5 || s.P50 != 2 || s.P90 != 4 || s.P99 != 4 {
		t.Fatalf("Summarize = %+v", s)
	}
	if want := math.Sqrt(5.0 / 3); math.Abs(s.Stddev-want) > 1e-12 {
		t.Errorf("stddev %v, want %v (sample standard deviation)", s.Stddev, want)
	}
	if lat[0] != 4*time.Millisecond {
		t.Error("Summarize reordered its input")
	}
	if z := Summarize(nil); z != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", z)
	}
	one := SummarizeMillis([]float64{7.5})
	if one.P50 != 7.5 || one.P99 != 7.5 || one.Stddev != 0 {
		t.Errorf("one value: %+v", one)
	}
}

// BenchmarkSummarize sorts and summarises 10,000 latencies.
func BenchmarkSummarize(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	lat := make([]time.Duration, 10000)
	for i := range lat {
		lat[i] = time.Duration(rng.ExpFloat64() * float64(time.Millisecond))
	}
	for b.Loop() {
		Summarize(lat)
	}
}

func TestParseLists(t *testing.T) {
	got, err := ParseInts("1, 8,64,,256")
	if err != nil || !slices.Equal(got, []int{1, 8, 64, 256}) {
		t.Errorf("ParseInts = %v, %v", got, err)
	}
	for _, bad := range []string{"", "0", "1,x", "-4"} {
		if _, err := ParseInts(bad); err == nil {
			t.Errorf("ParseInts(%q) accepted", bad)
		}
	}
}
