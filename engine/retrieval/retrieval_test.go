package retrieval

import (
	"math"
	"math/rand/v2"
	"sort"
	"testing"
)

func TestExactMatchesSortedScan(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	const n, dim = 500, 16
	vecs := make([]float32, n*dim)
	for i := range vecs {
		vecs[i] = float32(rng.NormFloat64())
	}
	idx, err := NewExact(vecs, dim)
	if err != nil {
		t.Fatal(err)
	}
	q := make([]float32, dim)
	for i := range q {
		q[i] = float32(rng.NormFloat64())
	}
	skip := func(i int) bool { return i%7 == 0 }
	got := idx.Search(q, 10, skip)
	// reference: cosine of every row in float64, sorted
	type pair struct {
		i int
		s float64
	}
	var all []pair
	for i := 0; i < n; i++ {
		if skip(i) {
			continue
		}
		var dot, nq, nr float64
		for d := 0; d < dim; d++ {
			a, b := float64(q[d]), float64(vecs[i*dim+d])
			dot += a * b
			nq += a * a
			nr += b * b
		}
		all = append(all, pair{i, dot / math.Sqrt(nq*nr)})
	}
	sort.Slice(all, func(a, b int) bool { return all[a].s > all[b].s })
	if len(got) != 10 {
		t.Fatalf("%d hits", len(got))
	}
	for r, h := range got {
		if h.Item != all[r].i || math.Abs(float64(h.Score)-all[r].s) > 1e-5 {
			t.Fatalf("rank %d: got %+v want item %d score %v", r, h, all[r].i, all[r].s)
		}
	}
	if idx.Search(q, 0, nil) != nil || idx.Search(q[:3], 5, nil) != nil {
		t.Fatal("k=0 or a wrong-size query must give nothing")
	}
	if len(idx.Search(q, n+10, nil)) != n {
		t.Fatal("k beyond the catalog returns every item")
	}
	if _, err := NewExact(vecs[:5], dim); err == nil {
		t.Fatal("ragged rows accepted")
	}
}

func TestEmbeddingCacheCountsAndEvicts(t *testing.T) {
	c := NewEmbeddingCache(2)
	a, b, d := KeyOf("text", []byte("a")), KeyOf("text", []byte("b")), KeyOf("image", []byte("a"))
	if a == d {
		t.Fatal("kind must be part of the key")
	}
	if _, ok := c.Get(a); ok {
		t.Fatal("empty cache hit")
	}
	c.Add(a, []float32{1})
	c.Add(b, []float32{2})
	if v, ok := c.Get(a); !ok || v[0] != 1 {
		t.Fatal("miss after add")
	}
	c.Add(d, []float32{3}) // evicts b, the least recently used
	if _, ok := c.Get(b); ok {
		t.Fatal("b should have been evicted")
	}
	if hits, misses := c.Stats(); hits != 1 || misses != 2 {
		t.Fatalf("hits %d misses %d", hits, misses)
	}
	off := NewEmbeddingCache(0)
	off.Add(a, []float32{1})
	if _, ok := off.Get(a); ok || off.Len() != 0 {
		t.Fatal("disabled cache stored a value")
	}
}

func BenchmarkExactSearch1682x384(b *testing.B) { benchmarkExactSearch(b, 1682) }

// benchmarkExactSearch times a top-10 search of n random 384-dimensional rows.
func benchmarkExactSearch(b *testing.B, n int) {
	rng := rand.New(rand.NewPCG(1, 1))
	vecs := make([]float32, n*384)
	for i := range vecs {
		vecs[i] = float32(rng.NormFloat64())
	}
	idx, _ := NewExact(vecs, 384)
	q := vecs[:384]
	b.ReportAllocs()
	for b.Loop() {
		idx.Search(q, 10, nil)
	}
}
