package eval

import (
	"context"
	"errors"
	"math"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/llm4rec/llm4rec/engine/recommend"
)

// Parallel calls every index once, stops starting calls after the first error and returns it.
func TestParallel(t *testing.T) {
	var calls [100]atomic.Int32
	if err := Parallel(context.Background(), len(calls), 7, func(i int) error { calls[i].Add(1); return nil }); err != nil {
		t.Fatal(err)
	}
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Fatalf("index %d called %d times", i, n)
		}
	}
	var started atomic.Int32
	boom := errors.New("boom")
	err := Parallel(context.Background(), 1000, 1, func(i int) error {
		started.Add(1)
		if i == 3 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) || started.Load() != 4 {
		t.Errorf("err %v after %d calls, want boom after 4", err, started.Load())
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Parallel(ctx, 10, 2, func(int) error { t.Error("called after cancel"); return nil }); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestPairedBootstrap(t *testing.T) {
	a := []bool{true, true, true, true}
	b := []bool{false, false, false, false}
	if ci := PairedBootstrap(a, b, 1); ci != [2]float64{1, 1} {
		t.Errorf("all better: %v", ci)
	}
	if ci := PairedBootstrap(a, a, 1); ci != [2]float64{0, 0} {
		t.Errorf("identical: %v", ci)
	}
	ci := PairedBootstrap([]bool{true, false, true, false}, []bool{false, false, true, true}, 1)
	if ci[0] > 0 || ci[1] < 0 || ci[0] < -1 || ci[1] > 1 {
		t.Errorf("mixed: %v", ci)
	}
}

func TestPairedMeanDiff(t *testing.T) {
	a := []float64{0.5, 0, 1, 0.3, 0, 1}
	b := []float64{0.2, 0, 1, 0, 0, 0.5}
	d, ci := PairedMeanDiff(a, b, 1)
	if math.Abs(d-1.1/6) > 1e-12 || ci[0] < 0 || ci[0] > d || ci[1] < d || ci[1] > 0.5 {
		t.Errorf("difference %v, interval %v", d, ci)
	}
	if d, ci := PairedMeanDiff(a, a, 1); d != 0 || ci != [2]float64{} {
		t.Errorf("identical: %v %v", d, ci)
	}
	if d, ci := PairedMeanDiff(nil, nil, 1); d != 0 || ci != [2]float64{} {
		t.Errorf("empty: %v %v", d, ci)
	}
}

// The steering users are drawn among those with a held-out item and enough history, the same
// for the same seed, in ascending order, all of them when fewer than asked.
func TestSteeringUsers(t *testing.T) {
	var users []SplitUser
	for u := 0; u < 200; u++ {
		su := SplitUser{Train: make([]int, u%30), Val: 1, Test: 2}
		if u%7 == 0 {
			su.Val, su.Test = -1, -1 // no held-out item: never drawn, however long the history
			su.Train = make([]int, 40)
		}
		users = append(users, su)
	}
	a := SteeringUsers(users, 20, 25, 3)
	if len(a) != 25 || !slices.IsSorted(a) || !slices.Equal(a, SteeringUsers(users, 20, 25, 3)) {
		t.Fatalf("drawn %v", a)
	}
	for _, u := range a {
		if users[u].Test < 0 || len(users[u].TestHistory()) < 20 {
			t.Errorf("user %d drawn with test %d and %d history items", u, users[u].Test, len(users[u].TestHistory()))
		}
	}
	if slices.Equal(a, SteeringUsers(users, 20, 25, 4)) {
		t.Error("another seed drew the same users")
	}
	eligible := 0
	for _, su := range users {
		if su.Test >= 0 && len(su.TestHistory()) >= 20 {
			eligible++
		}
	}
	if all := SteeringUsers(users, 20, 1000, 3); len(all) != eligible {
		t.Errorf("asked for more than the %d eligible users, got %d", eligible, len(all))
	}
	if got := SteeringUsers(users, 1000, 5, 3); len(got) != 0 {
		t.Errorf("no user has 1000 items, drew %v", got)
	}
}

// Category precision and NDCG on lists worked out by hand.
func TestSteeringPrecisionByHand(t *testing.T) {
	items := []recommend.Item{{Categories: []string{"Drama"}}, {Categories: []string{"Comedy", "Drama"}}, {}, {Categories: []string{"Comedy"}}}
	in := InCategory(items, "Drama")
	if !slices.Equal(in, []bool{true, true, false, false}) {
		t.Fatalf("in Drama: %v", in)
	}
	// lists: 2 of 4, 0 of 2, 1 of 1 in Drama; an empty list counts 0
	tops := [][]int{{0, 1, 2, 3}, {2, 3}, {1}, {}}
	if p := CategoryPrecision(tops, in); !near(p, (0.5+0+1+0)/4) {
		t.Errorf("precision %v", p)
	}
	if p := CategoryPrecision(tops[:3], InCategory(items, "Comedy")); !near(p, (0.5+0.5+1)/3) {
		t.Errorf("Comedy precision %v", p)
	}
	if CategoryPrecision(nil, in) != 0 || MeanNDCG(nil, nil) != 0 {
		t.Error("no lists")
	}
	if n := MeanNDCG(tops[:3], []int{1, 3, 0}); !near(n, (1/math.Log2(3)+1/math.Log2(3)+0)/3) {
		t.Errorf("NDCG %v", n)
	}
}
