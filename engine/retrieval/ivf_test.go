package retrieval

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/internal/racemode"
)

func TestIVFRecallAgainstExact(t *testing.T) {
	const n, dim = 5000, 32
	vecs, queries := clustered(n, dim, 50, 0.5, 1)
	ex, err := NewExact(vecs, dim)
	if err != nil {
		t.Fatal(err)
	}
	x, err := NewIVF(vecs, dim, IVFConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if x.Len() != n || x.Dim() != dim || x.Lists() != 71 || x.Probe() != DefaultIVFProbe {
		t.Fatalf("len %d dim %d lists %d probe %d", x.Len(), x.Dim(), x.Lists(), x.Probe())
	}
	r := Recall(x, ex, queries, 10)
	t.Logf("ivf recall@10 on %d clustered items, queries near items: %.3f", n, r)
	if r < 0.95 {
		t.Fatalf("recall@10 %.3f, want at least 0.95 on well-clustered data", r)
	}
	// one probe of many lists loses neighbours a wide probe finds: the probe is what is searched
	one, err := NewIVF(vecs, dim, IVFConfig{Lists: 200, Probe: 1})
	if err != nil {
		t.Fatal(err)
	}
	if r1 := Recall(one, ex, queries, 10); r1 >= r {
		t.Fatalf("one probe of 200 lists: recall %.3f, not below the default's %.3f", r1, r)
	}
	// probing every list is exact
	all, err := NewIVF(vecs, dim, IVFConfig{Lists: 8, Probe: 8})
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range queries[:20] {
		if got, want := all.Search(q, 10, nil), ex.Search(q, 10, nil); !slices.Equal(got, want) {
			t.Fatalf("every list probed: %v, exact %v", got, want)
		}
	}
	// Vector and Scores answer in item order, as Exact does
	for i := 0; i < n; i += 97 {
		if !slices.Equal(x.Vector(i), ex.Vector(i)) {
			t.Fatalf("Vector(%d) differs", i)
		}
	}
	a, b := x.Scores(queries[0], nil), ex.Scores(queries[0], nil)
	for i := range a {
		if d := a[i] - b[i]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("Scores differ at %d: %v %v", i, a[i], b[i])
		}
	}
	// the same seed builds the same index
	again, _ := NewIVF(vecs, dim, IVFConfig{})
	if !slices.Equal(again.item, x.item) || !slices.Equal(again.start, x.start) {
		t.Fatal("two builds with one seed differ")
	}
}

func TestIVFSearchSkipsAndOrders(t *testing.T) {
	const dim = 16
	vecs, queries := clustered(2000, dim, 20, 0.4, 5)
	x, err := NewIVF(vecs, dim, IVFConfig{Lists: 40, Probe: 2})
	if err != nil {
		t.Fatal(err)
	}
	// skipping almost everything: the search widens its probe until k hits remain
	// (scores from the lists' matrix-vector products, within float32 rounding of Dot)
	checkSkippingSearch(t, x, queries[:10], func(i int) bool { return i%50 != 0 }, 1e-5)
	// everything skipped: nothing, without looping
	if hits := x.Search(queries[0], 5, func(int) bool { return true }); len(hits) != 0 {
		t.Fatalf("%d hits with every item skipped", len(hits))
	}
	// duplicated rows tie: the lower item first
	dup := append(append([]float32(nil), vecs[:dim]...), vecs[:dim]...)
	d, err := NewIVF(dup, dim, IVFConfig{})
	if err != nil {
		t.Fatal(err)
	}
	if hits := d.Search(vecs[:dim], 2, nil); len(hits) != 2 || hits[0].Item != 0 || hits[1].Item != 1 {
		t.Fatalf("tie order: %+v", hits)
	}
}

func TestIVFEdges(t *testing.T) {
	if _, err := NewIVF(make([]float32, 10), 3, IVFConfig{}); err == nil {
		t.Error("10 values as rows of 3 accepted")
	}
	if _, err := NewIVF(make([]float32, 12), 3, IVFConfig{Probe: -1}); err == nil {
		t.Error("negative probe accepted")
	}
	// a non-finite value in wide rows: the principal axes cannot be found, a clear error
	wide := make([]float32, 64*256)
	for i := range wide {
		wide[i] = float32(i % 7)
	}
	wide[5] = float32(math.NaN())
	if _, err := NewIVF(wide, 256, IVFConfig{}); err == nil || !strings.Contains(err.Error(), "factorize") {
		t.Errorf("a NaN in wide rows: %v", err)
	}
	empty, err := NewIVF(nil, 4, IVFConfig{})
	if err != nil || empty.Len() != 0 || empty.Search([]float32{1, 0, 0, 0}, 3, nil) != nil {
		t.Fatalf("empty index: %v", err)
	}
	// more lists than rows, and a probe above the lists, are clamped; a zero row stays zero
	x, err := NewIVF([]float32{1, 0, 0, 1, 0, 0}, 2, IVFConfig{Lists: 10, Probe: 50})
	if err != nil || x.Lists() != 3 || x.Probe() != 3 {
		t.Fatalf("lists %d probe %d: %v", x.Lists(), x.Probe(), err)
	}
	hits := x.Search([]float32{2, 0}, 3, nil)
	if len(hits) != 3 || hits[0].Item != 0 || hits[0].Score != 1 || hits[2].Item != 2 || hits[2].Score != 0 {
		t.Fatalf("hits %+v", hits)
	}
	if x.Search([]float32{1, 0}, 0, nil) != nil || x.Search([]float32{1, 0, 0}, 2, nil) != nil {
		t.Fatal("k=0 or a wrong-size query must give nothing")
	}
	if k, err := ParseIndexKind("IVF"); err != nil || k != IndexIVF {
		t.Fatalf("parse ivf: %v %v", k, err)
	}
	if idx, err := New(IndexIVF, []float32{1, 0, 0, 1}, 2); err != nil || idx.Len() != 2 {
		t.Fatalf("New(ivf): %v", err)
	}
}

// One search of a 100,000 x 384 clustered catalog (compare BenchmarkExactSearch100000x384).
func BenchmarkIVFSearch100000x384(b *testing.B) {
	vecs, queries := clustered(100000, 384, 1000, 0.8, 3)
	x, err := NewIVF(vecs, 384, IVFConfig{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		x.Search(queries[i%len(queries)], 10, nil)
		i++
	}
}

// Building the index of a 100,000 x 384 clustered catalog (the cost added to a bundle load).
func BenchmarkIVFBuild100000x384(b *testing.B) {
	vecs, _ := clustered(100000, 384, 1000, 0.8, 3)
	for b.Loop() {
		if _, err := NewIVF(vecs, 384, IVFConfig{}); err != nil {
			b.Fatal(err)
		}
	}
}

// Searches from many goroutines at once (pooled scratch memory) answer as one at a time.
func TestIVFConcurrentSearch(t *testing.T) {
	const dim = 24
	vecs, queries := clustered(3000, dim, 30, 0.5, 9)
	x, err := NewIVF(vecs, dim, IVFConfig{Probe: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := make([][]Hit, len(queries))
	for i, q := range queries {
		want[i] = x.Search(q, 10, nil)
	}
	errs := make(chan string, 16)
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for r := 0; r < 5; r++ {
				for i := range queries {
					j := (i + g*7) % len(queries)
					if got := x.Search(queries[j], 10, nil); !slices.Equal(got, want[j]) {
						errs <- fmt.Sprintf("goroutine %d query %d: %v, alone %v", g, j, got, want[j])
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
}

// AppendSearch gives every index's Search hits after what dst holds, widening included, and
// the exact scan and the inverted file allocate nothing with room in dst (the engine's
// per-request retrieval).
func TestAppendSearchAppendsWithoutAllocating(t *testing.T) {
	if racemode.Enabled {
		t.Skip("allocations are counted without the race detector (its sync.Pool drops items at random)")
	}
	const dim = 16
	vecs, queries := clustered(2000, dim, 20, 0.4, 7)
	exact, err := NewExact(vecs, dim)
	if err != nil {
		t.Fatal(err)
	}
	ivf, err := NewIVF(vecs, dim, IVFConfig{Lists: 40, Probe: 2})
	if err != nil {
		t.Fatal(err)
	}
	// the reduced scan (8 principal axes of 16) takes its own path
	reduced, err := NewIVF(vecs, dim, IVFConfig{Lists: 40, Probe: 2, Reduced: 8}) // the default 128 re-scored
	if err != nil || reduced.reduced != 8 {
		t.Fatalf("reduced scan not built: %v", err)
	}
	hnsw, err := NewHNSW(vecs, dim, HNSWConfig{})
	if err != nil {
		t.Fatal(err)
	}
	skip := func(i int) bool { return i%3 != 0 }
	for name, x := range map[string]Index{"exact": exact, "ivf": ivf, "ivf reduced": reduced, "hnsw": hnsw} {
		for _, q := range queries[:10] {
			want := x.Search(q, 10, skip)
			prefix := []Hit{{-1, 9}}
			got := x.AppendSearch(prefix, q, 10, skip)
			if got[0] != prefix[0] || !slices.Equal(got[1:], want) {
				t.Fatalf("%s: AppendSearch %v, want %v then %v", name, got, prefix, want)
			}
			// the exact scan and the inverted file (widening) always find k; the graph's
			// search may stop short when most items are skipped
			if name != "hnsw" && len(want) != 10 {
				t.Fatalf("%s: %d hits, want 10", name, len(want))
			}
		}
		if name == "hnsw" {
			continue
		}
		dst := make([]Hit, 0, 10)
		q := queries[0]
		x.AppendSearch(dst, q, 10, skip) // pools warm
		if a := testing.AllocsPerRun(50, func() { x.AppendSearch(dst[:0], q, 10, skip) }); a != 0 {
			t.Errorf("%s: a search with room in dst allocates %v times", name, a)
		}
	}
}

// Wide rows are scanned on their principal axes and the best of that scan scored exactly:
// recall close to the full rows' scan, exact scores, Exact's order, skips honoured.
func TestIVFReducedScan(t *testing.T) {
	const n, dim = 6000, 256
	vecs, queries := clustered(n, dim, 60, 1.0, 11)
	ex, err := NewExact(vecs, dim)
	if err != nil {
		t.Fatal(err)
	}
	reduced, err := NewIVF(vecs, dim, IVFConfig{})
	if err != nil {
		t.Fatal(err)
	}
	full, err := NewIVF(vecs, dim, IVFConfig{Reduced: dim})
	if err != nil {
		t.Fatal(err)
	}
	if reduced.reduced != DefaultIVFReduced || full.reduced != 0 {
		t.Fatalf("reduced %d, full %d: the defaults are %d for 256 dimensions and off at the rows' width",
			reduced.reduced, full.reduced, DefaultIVFReduced)
	}
	// the axes are orthonormal
	for a := 0; a < reduced.reduced; a += 7 {
		for b := a; b < reduced.reduced; b += 5 {
			d := Dot(reduced.axes[a*dim:(a+1)*dim], reduced.axes[b*dim:(b+1)*dim])
			if want := float32(map[bool]int{true: 1}[a == b]); d-want > 1e-4 || want-d > 1e-4 {
				t.Fatalf("axes %d . %d = %v", a, b, d)
			}
		}
	}
	rr, rf := Recall(reduced, ex, queries, 10), Recall(full, ex, queries, 10)
	t.Logf("recall@10: reduced scan %.3f, full rows %.3f", rr, rf)
	if rr < rf-0.02 {
		t.Fatalf("reduced scan recall@10 %.3f, full rows %.3f", rr, rf)
	}
	// too few axes to tell the clusters' items apart, and no exact re-scoring beyond k:
	// the re-scoring is what recovers the full scan's recall
	crude, err := NewIVF(vecs, dim, IVFConfig{Reduced: 2, Rerank: 10})
	if err != nil {
		t.Fatal(err)
	}
	rc := Recall(crude, ex, queries, 10)
	t.Logf("recall@10 with 2 axes and no re-scoring: %.3f", rc)
	if rc >= rr {
		t.Fatalf("2 axes and no re-scoring: recall %.3f, not below %.3f", rc, rr)
	}
	checkSkippingSearch(t, reduced, queries[:10], func(i int) bool { return i%40 != 0 }, 1e-6)
	// shared unit rows are read in place and answer as the copy does; rows that are not unit
	// are refused; without the reduced scan they are copied as always
	unitVecs := append([]float32(nil), vecs...)
	for i := 0; i < n; i++ {
		Normalize(unitVecs[i*dim : (i+1)*dim])
	}
	shared, err := NewIVF(unitVecs, dim, IVFConfig{Shared: true})
	if err != nil {
		t.Fatal(err)
	}
	if &shared.rows[0] != &unitVecs[0] || &shared.Vector(7)[0] != &unitVecs[7*dim] {
		t.Fatal("shared rows copied")
	}
	for _, q := range queries[:20] {
		got, want := shared.Search(q, 10, nil), reduced.Search(q, 10, nil)
		for j := range want {
			if got[j].Item != want[j].Item || math.Abs(float64(got[j].Score-want[j].Score)) > 1e-6 {
				t.Fatalf("shared rows: %+v, copied %+v", got, want)
			}
		}
	}
	if a, b := shared.Scores(queries[0], nil), ex.Scores(queries[0], nil); math.Abs(float64(a[11]-b[11])) > 1e-6 {
		t.Fatalf("shared Scores %v, exact %v", a[11], b[11])
	}
	if _, err := NewIVF(vecs, dim, IVFConfig{Shared: true}); err == nil {
		t.Fatal("rows that are not unit shared")
	}
	narrow, err := NewIVF(unitVecs[:100*16], 16, IVFConfig{Shared: true})
	if err != nil || &narrow.rows[0] == &unitVecs[0] {
		t.Fatalf("without the reduced scan the rows are copied: %v", err)
	}
	for _, q := range queries[:10] {
		want := ex.Search(q, 10, nil)
		for j, h := range reduced.Search(q, 10, nil) {
			if h == want[j] {
				continue
			}
			// a different item only where the exact scan's is missing from the reduced one's
			for _, w := range reduced.Search(q, 10, nil) {
				if w.Item == want[j].Item {
					t.Fatalf("hit %d: %+v, exact %+v, though it was found", j, h, want[j])
				}
			}
		}
	}
}

// TestIVFReducedSweep measures recall@10 against the exact scan and search time of the
// reduced scan's settings on the item embeddings (raw little-endian float32 rows of 384, as
// bundles ship them) of the files listed in LLM4REC_IVF_SWEEP (colon-separated); it skips
// without. Queries as bench scale's: sums of 50 random items' embeddings.
func TestIVFReducedSweep(t *testing.T) {
	files := os.Getenv("LLM4REC_IVF_SWEEP")
	if files == "" {
		t.Skip("LLM4REC_IVF_SWEEP names no embedding files")
	}
	const dim = 384
	for _, p := range strings.Split(files, ":") {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		vecs := make([]float32, len(b)/4)
		for i := range vecs {
			vecs[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[i*4:]))
		}
		n := len(vecs) / dim
		ex, err := NewExact(vecs, dim)
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewPCG(3, 4))
		queries := make([][]float32, 200)
		for q := range queries {
			queries[q] = make([]float32, dim)
			for j := 0; j < 50; j++ {
				r := rng.IntN(n)
				for d := range queries[q] {
					queries[q][d] += vecs[r*dim+d]
				}
			}
		}
		for _, c := range []IVFConfig{{Reduced: dim}, {Reduced: 16, Rerank: 64}, {Reduced: 32, Rerank: 32},
			{Reduced: 32, Rerank: 64}, {Reduced: 64, Rerank: 32}, {Reduced: 64, Rerank: 64}, {Reduced: 64, Rerank: 128}} {
			x, err := NewIVF(vecs, dim, c)
			if err != nil {
				t.Fatal(err)
			}
			r := Recall(x, ex, queries, 10)
			start, reps := time.Now(), 0
			for time.Since(start) < time.Second {
				for _, q := range queries {
					x.Search(q, 10, nil)
				}
				reps++
			}
			t.Logf("%s: %d items, reduced %d (0: full rows), rerank %d: recall@10 %.3f, search %.3f ms", p, n, x.reduced, x.rerank, r,
				time.Since(start).Seconds()*1000/float64(reps*len(queries)))
		}
	}
}
