package recommend

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/engine/retrieval"
)

// The catalog's steering terms taken in the map's rank equal the full product v . content_i
// for any output v = Up . s of the map; a map without full column rank is left to the full
// product; sizes that do not fit are errors.
func TestLowRankSteeringEqualsFullProduct(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	const dim, rank, n = 48, 12, 300
	up := make([]float32, dim*rank)
	for i := range up {
		up[i] = float32(rng.NormFloat64() * 0.05)
	}
	emb := make([]float32, n*dim)
	for i := range n {
		row := emb[i*dim : (i+1)*dim]
		for j := range row {
			row[j] = float32(rng.NormFloat64())
		}
		retrieval.Normalize(row)
	}
	l, err := newLowRankSteering(up, dim, rank, emb, n)
	if err != nil || l == nil {
		t.Fatalf("newLowRankSteering: %v, %v", l, err)
	}
	for trial := range 5 {
		s := make([]float64, rank)
		for j := range s {
			s[j] = rng.NormFloat64()
		}
		v := make([]float32, dim)
		for i := range dim {
			var x float64
			for j := range rank {
				x += float64(up[i*rank+j]) * s[j]
			}
			v[i] = float32(x)
		}
		got := l.scores(v, nil)
		worst, scale := 0.0, 0.0
		for i := range n {
			want := float64(retrieval.Dot(v, emb[i*dim:(i+1)*dim]))
			worst = math.Max(worst, math.Abs(float64(got[i])-want))
			scale = math.Max(scale, math.Abs(want))
		}
		if worst > 1e-4*scale {
			t.Fatalf("trial %d: max abs difference %.3g against terms up to %.3g", trial, worst, scale)
		}
	}
	if again := l.scores(make([]float32, dim), make([]float32, 0, n)); len(again) != n || again[0] != 0 {
		t.Fatalf("a zero steering vector: %v", again[:3])
	}

	zero := make([]float32, dim*rank) // an untrained map: no rank to recover
	if l, err := newLowRankSteering(zero, dim, rank, emb, n); l != nil || err != nil {
		t.Fatalf("a zero map: %v, %v; want the full product", l, err)
	}
	if _, err := newLowRankSteering(up[:dim*rank-1], dim, rank, emb, n); err == nil || !strings.Contains(err.Error(), "steering_up") {
		t.Fatalf("a short map: %v", err)
	}
	if _, err := newLowRankSteering(up, dim, dim+1, emb, n); err == nil {
		t.Fatal("a rank above the dimension is accepted")
	}
}
