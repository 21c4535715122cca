package ranking

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/llm4rec/llm4rec/internal/racemode"
)

// TopK agrees with a full stable sort (score descending, ties by the lower row) on random
// scores with many ties and exclusions, for every k from 0 past the number of rows left.
func TestTopKMatchesSort(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 260; trial++ {
		n := 1 + rng.IntN(60)
		if trial >= 200 {
			n = 200 + rng.IntN(3000) // across the blocks AppendTopK skips by their largest score
		}
		score := make([]float32, n)
		excl := make([]bool, n)
		for i := range score {
			score[i] = float32(rng.IntN(8)) // few distinct values: ties everywhere
			if trial%3 == 1 && trial >= 200 {
				score[i] = float32(i / 300) // rising: later blocks are never skipped
			}
			excl[i] = rng.IntN(4) == 0
		}
		var want []int
		for i := range score {
			if !excl[i] {
				want = append(want, i)
			}
		}
		slices.SortStableFunc(want, func(a, b int) int {
			switch {
			case score[a] > score[b]:
				return -1
			case score[a] < score[b]:
				return 1
			}
			return 0
		})
		for k := 0; k <= n+1; k++ {
			if n > 60 && k > 12 && k < n-1 {
				continue
			}
			got := TopK(score, excl, k)
			w := want[:min(k, len(want))]
			if !slices.Equal(got, w) && !(len(got) == 0 && len(w) == 0) {
				t.Fatalf("n %d k %d: got %v, want %v (scores %v)", n, k, got, w, score)
			}
			// the slice form and the function form agree, with and without exclusions
			if by := TopKBy(n, func(i int) float32 { return score[i] }, excl, k); !slices.Equal(got, by) {
				t.Fatalf("n %d k %d: TopK %v, TopKBy %v", n, k, got, by)
			}
			all, allBy := TopK(score, nil, k), TopKWhere(n, func(i int) float32 { return score[i] }, nil, k)
			if !slices.Equal(all, allBy) {
				t.Fatalf("n %d k %d, nothing excluded: TopK %v, TopKWhere %v", n, k, all, allBy)
			}
			// the append forms keep what dst held and add the same rows, with or without room
			for _, dst := range [][]int{{-1, -2}, append(make([]int, 0, 3+k), -1, -2)} {
				app := AppendTopK(dst, score, excl, k)
				appW := AppendTopKWhere(slices.Clone(dst), n, func(i int) float32 { return score[i] }, func(i int) bool { return excl[i] }, k)
				if !slices.Equal(app[:2], []int{-1, -2}) || !slices.Equal(app[2:], w) && len(w) > 0 || !slices.Equal(app, appW) {
					t.Fatalf("n %d k %d: AppendTopK %v, AppendTopKWhere %v, want [-1 -2] then %v", n, k, app, appW, w)
				}
			}
		}
	}
}

// TopKBy calls the score function once per row that is not excluded.
func TestTopKByScoresEachRowOnce(t *testing.T) {
	calls := make([]int, 10)
	excl := []bool{false, true, false, false, false, false, false, false, false, true}
	got := TopKBy(10, func(i int) float64 { calls[i]++; return float64(i % 3) }, excl, 3)
	if !slices.Equal(got, []int{2, 5, 8}) {
		t.Errorf("top 3 %v, want [2 5 8]", got)
	}
	for i, c := range calls {
		if want := map[bool]int{true: 0, false: 1}[excl[i]]; c != want {
			t.Errorf("row %d scored %d times, want %d", i, c, want)
		}
	}
}

// With room in dst for k+1 rows the append forms allocate nothing (the kept scores are on
// the stack up to k 128, stackK).
func TestAppendTopKAllocatesNothingWithRoom(t *testing.T) {
	if racemode.Enabled {
		t.Skip("allocations are counted without the race detector (its sync.Pool drops items at random)")
	}
	score := make([]float32, 5000)
	for i := range score {
		score[i] = float32((i * 7919) % 1009)
	}
	excl := make([]bool, len(score))
	excl[3] = true
	for _, k := range []int{1, 10, 64, stackK} {
		dst := make([]int, 0, k+1)
		var got []int
		if a := testing.AllocsPerRun(50, func() { got = AppendTopK(dst[:0], score, excl, k) }); a != 0 {
			t.Errorf("k %d: AppendTopK made %v allocations with room in dst", k, a)
		}
		if !slices.Equal(got, TopK(score, excl, k)) {
			t.Errorf("k %d: AppendTopK %v, TopK %v", k, got, TopK(score, excl, k))
		}
		fn, skip := func(i int) float32 { return score[i] }, func(i int) bool { return excl[i] }
		if a := testing.AllocsPerRun(50, func() { got = AppendTopKWhere(dst[:0], len(score), fn, skip, k) }); a != 0 {
			t.Errorf("k %d: AppendTopKWhere made %v allocations with room in dst", k, a)
		}
	}
	// past the stack's k the kept scores are on the heap, and the rows still right
	fn := func(i int) float32 { return score[i] }
	if got, want := AppendTopK(make([]int, 0, 201), score, excl, 200), TopKWhere(len(score), fn, func(i int) bool { return excl[i] }, 200); len(got) != 200 || !slices.Equal(got, want) {
		t.Errorf("k 200: AppendTopK %v, TopKWhere %v", got, want)
	}
}

func BenchmarkTopK100000(b *testing.B) {
	rng := rand.New(rand.NewPCG(3, 3))
	score := make([]float32, 100000)
	excl := make([]bool, len(score))
	for i := range score {
		score[i] = float32(rng.NormFloat64())
		excl[i] = i%97 == 0
	}
	for b.Loop() {
		TopK(score, excl, 50)
	}
}
