package ranking

import (
	"math"
	"math/rand/v2"
	"testing"
)

func TestExpNonPositiveMatchesMathExp(t *testing.T) {
	worst := 0.0
	check := func(x float64) {
		got, want := expNonPositive(x), math.Exp(x)
		if x < -40 {
			if got != 0 {
				t.Fatalf("exp(%v) = %v, want 0 below -40", x, got)
			}
			return
		}
		rel := math.Abs(got-want) / want
		worst = max(worst, rel)
		if rel > 1e-12 {
			t.Fatalf("exp(%v) = %v, math.Exp %v (relative %v)", x, got, want, rel)
		}
	}
	for _, x := range []float64{0, -1e-300, -0.5 * math.Ln2, -math.Ln2, -1, -10, -39.999, -40, -40.0001, -745, math.Inf(-1)} {
		check(x)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200000; i++ {
		check(-45 * rng.Float64())
	}
	t.Logf("largest relative error: %.3g", worst)
	if v := expNonPositive(math.NaN()); v == v {
		t.Fatalf("exp(NaN) = %v", v)
	}
}

// The reference: the same float32 log-softmax with math.Exp.
func logSoftmaxRef(x []float32) []float32 {
	mx := float32(math.Inf(-1))
	for _, v := range x {
		mx = max(mx, v)
	}
	var sum float64
	for _, v := range x {
		sum += math.Exp(float64(v - mx))
	}
	lse := mx + float32(math.Log(sum))
	out := make([]float32, len(x))
	for i, v := range x {
		out[i] = v - lse
	}
	return out
}

func BenchmarkLogSoftmaxMathExp100000(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, 100000)
	for i := range x {
		x[i] = float32(4 * rng.NormFloat64())
	}
	for b.Loop() {
		logSoftmaxRef(x)
	}
}

// TestLogSoftmax checks the vectorized passes where the CPU has them and the scalar ones that
// machines without AVX2 and FMA run.
func TestLogSoftmax(t *testing.T) {
	if vectorized {
		t.Run("vectorized", checkLogSoftmax)
	}
	t.Run("scalar", func(t *testing.T) {
		defer func(v bool) { vectorized = v }(vectorized)
		vectorized = false
		checkLogSoftmax(t)
	})
}

func checkLogSoftmax(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 2, 17, 1682, 100000} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(8 * rng.NormFloat64())
		}
		x[n/2] = -1e30 // far below every other: log-probability stays finite and exact
		want := logSoftmaxRef(x)
		got := make([]float32, n)
		LogSoftmax(x, got)
		for i := range got {
			// float32 outputs: the same as with math.Exp (the sums agree far below float32's
			// resolution, so lse rounds alike; one unit in the last place of lse is allowed)
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-6*math.Max(1, math.Abs(float64(want[i]))) {
				t.Fatalf("n %d: item %d: %v, reference %v", n, i, got[i], want[i])
			}
		}
		// in place gives the same
		LogSoftmax(x, x)
		for i := range x {
			if x[i] != got[i] {
				t.Fatalf("in place differs at %d", i)
			}
		}
	}
	// one value: log-probability 0; all -Inf: NaN as the definition gives; +Inf present: NaN
	one := []float32{3}
	LogSoftmax(one, one)
	if one[0] != 0 {
		t.Fatalf("single item: %v", one[0])
	}
	inf := []float32{float32(math.Inf(-1)), float32(math.Inf(-1))}
	LogSoftmax(inf, inf)
	if !math.IsNaN(float64(inf[0])) {
		t.Fatalf("all -Inf: %v", inf)
	}
	nan := []float32{1, 2, float32(math.NaN()), 4}
	LogSoftmax(nan, nan)
	for i, v := range nan {
		if !math.IsNaN(float64(v)) {
			t.Fatalf("a NaN in the input: result %d is %v, want NaN", i, v)
		}
	}
	LogSoftmax(nil, nil)
}

func BenchmarkLogSoftmax100000(b *testing.B) {
	rng := rand.New(rand.NewPCG(5, 6))
	x := make([]float32, 100000)
	for i := range x {
		x[i] = float32(4 * rng.NormFloat64())
	}
	dst := make([]float32, len(x))
	for b.Loop() {
		LogSoftmax(x, dst)
	}
}
