package ranking

import (
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/internal/racemode"
)

// 4 items, 2 neighbours each.
func testSimilar(t *testing.T, weight, decay float64, maxHistory int) *Similar {
	t.Helper()
	rows := []int32{1, 2, 0, -1, 3, 0, 2, -1}
	sims := []float32{0.5, 0.25, 0.5, 0, 1, 0.25, 1, 0}
	s, err := NewSimilar(rows, sims, 4, 2, weight, decay, maxHistory)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestEvidenceWeighsNewerItemsAndNormalises(t *testing.T) {
	s := testSimilar(t, 1, 0.5, 10)
	ev := make([]float64, 4)
	// history 0 (older, weight 0.5) then 2 (newest, weight 1):
	// item 1: 0.5*0.5 = 0.25; item 2: 0.5*0.25 = 0.125; item 3: 1*1 = 1; item 0: 1*0.25 = 0.25
	s.Evidence([]int{0, 2}, ev)
	want := []float64{0.25, 0.25, 0.125, 1}
	for i := range want {
		if math.Abs(ev[i]-want[i]) > 1e-12 {
			t.Fatalf("evidence %v, want %v", ev, want)
		}
	}
	// only the newest MaxHistory items count
	s.MaxHistory = 1
	s.Evidence([]int{0, 2}, ev)
	if ev[1] != 0 || ev[3] != 1 {
		t.Fatalf("with max history 1: %v", ev)
	}
}

// A history row past the table (an item added to the catalog after export) adds no evidence
// and keeps its place in the decay: the evidence equals that of the same history whose row
// has no neighbours, and nothing panics.
func TestEvidenceSkipsRowsOutsideTheTable(t *testing.T) {
	s := catalogSimilar(t, 100, 5)
	got := make([]float64, 100)
	s.Evidence([]int{3, 100, 7, 250}, got)
	// the same weights by hand: rows 3 and 7 at decay powers 3 and 1
	want := make([]float64, 100)
	for _, x := range []struct {
		row int
		pow float64
	}{{3, 3}, {7, 1}} {
		rows, sims := s.Neighbours(x.row)
		for j, r := range rows {
			if r >= 0 {
				want[r] += math.Pow(s.Decay, x.pow) * float64(sims[j])
			}
		}
	}
	mx := slices.Max(want)
	for i := range want {
		if math.Abs(got[i]-want[i]/mx) > 1e-12 {
			t.Fatalf("item %d: evidence %v, want %v", i, got[i], want[i]/mx)
		}
	}
}

func TestAddLeavesLogitsAloneWithoutHistoryOrWeight(t *testing.T) {
	logits := []float32{1, 2, 3, 4}
	testSimilar(t, 0, 1, 10).Add(logits, []int{0})
	testSimilar(t, 2, 1, 10).Add(logits, nil)
	var none *Similar
	none.Add(logits, []int{0})
	if !slices.Equal(logits, []float32{1, 2, 3, 4}) {
		t.Fatalf("logits changed: %v", logits)
	}
	testSimilar(t, 2, 1, 10).Add(logits, []int{1}) // item 1's neighbour: 0 (0.5) -> normalised 1
	if !slices.Equal(logits, []float32{3, 2, 3, 4}) {
		t.Fatalf("logits %v, want item 0 raised by 2", logits)
	}
}

func TestNewSimilarRefusesBadTables(t *testing.T) {
	for name, c := range map[string]struct {
		rows   []int32
		sims   []float32
		w, d   float64
		maxH   int
		errHas string
	}{
		"row outside":  {[]int32{1, 4}, []float32{1, 1}, 1, 1, 5, "outside the catalog"},
		"nan weight":   {[]int32{1, 0}, []float32{float32(math.NaN()), 1}, 1, 1, 5, "finite"},
		"short":        {[]int32{1}, []float32{1, 1}, 1, 1, 5, "rows"},
		"zero decay":   {[]int32{1, 0}, []float32{1, 1}, 1, 0, 5, "decay"},
		"neg weight":   {[]int32{1, 0}, []float32{1, 1}, -1, 1, 5, "weight"},
		"no history":   {[]int32{1, 0}, []float32{1, 1}, 1, 1, 0, "max_history"},
		"decay over 1": {[]int32{1, 0}, []float32{1, 1}, 1, 1.5, 5, "decay"},
	} {
		_, err := NewSimilar(c.rows, c.sims, 2, 1, c.w, c.d, c.maxH)
		if err == nil || !strings.Contains(err.Error(), c.errHas) {
			t.Errorf("%s: error %v, want one mentioning %q", name, err, c.errHas)
		}
	}
}

func TestDiversifyPushesNearDuplicatesDown(t *testing.T) {
	// items 0 and 1 point the same way, 2 is orthogonal
	emb := []float32{1, 0, 1, 0, 0, 1}
	score := []float32{3, 2.9, 2}
	if got := Diversify([]int{0, 1, 2}, score, emb, 2, 0, 2); !slices.Equal(got, []int{0, 1}) {
		t.Fatalf("lambda 0: %v, want the plain order", got)
	}
	if got := Diversify([]int{0, 1, 2}, score, emb, 2, 1, 3); !slices.Equal(got, []int{0, 2, 1}) {
		t.Fatalf("lambda 1: %v, want the orthogonal item second", got)
	}
	if got := Diversify([]int{0, 1}, score, emb, 2, 1, 5); len(got) != 2 {
		t.Fatalf("k beyond the candidates: %v", got)
	}
}

// AppendDiversified appends the picks Diversify returns after what dst holds, and allocates
// nothing with room for them.
func TestAppendDiversifiedKeepsDstWithoutAllocating(t *testing.T) {
	if racemode.Enabled {
		t.Skip("allocations are counted without the race detector (its sync.Pool drops items at random)")
	}
	emb := []float32{1, 0, 1, 0, 0, 1, 0.6, 0.8}
	score := []float32{3, 2.9, 2, 1}
	cands := []int{0, 1, 2, 3}
	want := Diversify(cands, score, emb, 2, 1, 3)
	got := AppendDiversified([]int{7}, cands, score, emb, 2, 1, 3)
	if !slices.Equal(got, append([]int{7}, want...)) {
		t.Fatalf("AppendDiversified %v, want [7] then %v", got, want)
	}
	dst := make([]int, 0, 4)
	if a := testing.AllocsPerRun(50, func() { AppendDiversified(dst[:0], cands, score, emb, 2, 1, 3) }); a != 0 {
		t.Fatalf("%v allocations with room in dst", a)
	}
}

func catalogSimilar(tb testing.TB, n, k int) *Similar {
	rows := make([]int32, n*k)
	sims := make([]float32, n*k)
	for i := range rows {
		rows[i] = int32((i*7919 + 13) % n)
		sims[i] = float32(i%97) / 97
	}
	s, err := NewSimilar(rows, sims, n, k, 2, 0.8, 100)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// Adding the term reuses its catalog-sized buffer between requests.
func TestAddDoesNotAllocate(t *testing.T) {
	s := catalogSimilar(t, 1682, 50)
	logits := make([]float32, 1682)
	hist := []int{5, 17, 300, 1200}
	s.Add(logits, hist)
	if a := testing.AllocsPerRun(100, func() { s.Add(logits, hist) }); a >= 1 {
		t.Fatalf("%v allocations per Add", a)
	}
}

func BenchmarkSimilarAdd(b *testing.B) {
	s := catalogSimilar(b, 1682, 50)
	logits := make([]float32, 1682)
	hist := make([]int, 50)
	for i := range hist {
		hist[i] = i * 31 % 1682
	}
	b.ReportAllocs()
	for b.Loop() {
		s.Add(logits, hist)
	}
}

func BenchmarkDiversify50(b *testing.B) {
	const n, dim = 200, 384
	emb := make([]float32, n*dim)
	for i := range emb {
		emb[i] = float32((i*7919)%1000)/1000 - 0.5
	}
	score := make([]float32, n)
	cands := make([]int, 50)
	for i := range cands {
		cands[i] = i * 3
		score[i*3] = float32(50 - i)
	}
	for b.Loop() {
		Diversify(cands, score, emb, dim, 1, 10)
	}
}
