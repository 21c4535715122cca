package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestMedianAndRotate(t *testing.T) {
	if got := Median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median of 3,1,2 = %v, want 2", got)
	}
	if got := Median([]float64{4, 1, 3, 2}); got != 2.5 {
		t.Errorf("median of 4,1,3,2 = %v, want 2.5", got)
	}
	if got := Median(nil); got != 0 {
		t.Errorf("median of nothing = %v, want 0", got)
	}
	impls := []string{"a", "b", "c"}
	firsts := map[string]int{}
	for r := 0; r < 6; r++ {
		o := rotate(impls, r)
		if len(o) != 3 {
			t.Fatalf("rotate(%d) = %v", r, o)
		}
		firsts[o[0]]++
	}
	for _, impl := range impls {
		if firsts[impl] != 2 {
			t.Errorf("%s ran first %d times in 6 rounds, want 2", impl, firsts[impl])
		}
	}
}

func TestQueriesAreReproducible(t *testing.T) {
	a, b := Queries(20, 1), Queries(20, 1)
	for i := range a {
		if a[i] != b[i] || len(strings.Fields(a[i])) != 30 {
			t.Fatalf("query %d: %q vs %q", i, a[i], b[i])
		}
	}
	if Queries(1, 2)[0] == a[0] {
		t.Error("another seed gave the same first query")
	}
}

// The ratios are medians of per-round ratios, and the target is judged at 32 callers.
func TestHTTPMediansAndTargets(t *testing.T) {
	var pts []HTTPPoint
	for r, f := range []float64{1, 2, 10} { // the third round is disturbed for the peer only
		pts = append(pts,
			HTTPPoint{Round: r, Impl: ImplEngine, Kind: "history", Callers: 32, Requests: 100, OK: 100, Throughput: 400, P50Ms: 5, P99Ms: 20},
			HTTPPoint{Round: r, Impl: ImplFastAPI, Kind: "history", Callers: 32, Requests: 100, OK: 99, Throughput: 200 / f, P50Ms: 50, P99Ms: 50 * f})
	}
	meds, targets := httpMedians(pts, []string{ImplEngine, ImplFastAPI}, []string{"history"}, []int{32})
	if len(meds) != 2 || len(targets) != 1 {
		t.Fatalf("medians %+v targets %+v", meds, targets)
	}
	f := meds[1]
	if f.Impl != ImplFastAPI || f.Throughput != 100 || f.P99Ms != 100 || f.FailedRequests != 3 {
		t.Errorf("fastapi medians %+v", f)
	}
	if f.EngineOver != 4 || f.EngineP99Over != 0.2 { // per-round ratios 2,4,20 and 0.4,0.2,0.04
		t.Errorf("ratios %v %v, want 4 and 0.2", f.EngineOver, f.EngineP99Over)
	}
	if tg := targets[0]; !tg.Met || tg.ThroughputRatio != 4 {
		t.Errorf("target %+v", tg)
	}
	rep := &Report{Config: Config{Rounds: 3, HTTPDuration: time.Second, Kinds: []string{"history"}}, HTTP: &HTTPReport{Medians: meds, Targets: targets}}
	var b strings.Builder
	rep.WriteTable(&b)
	if !strings.Contains(b.String(), "4.00x") || !strings.Contains(b.String(), "met") {
		t.Errorf("table:\n%s", b.String())
	}
	if err := rep.WritePlot(t.TempDir() + "/peers.png"); err != nil {
		t.Error(err)
	}
}

func TestMeasureText(t *testing.T) {
	var seen []string
	pts, err := measureText(func(b []string) error { seen = append(seen, b...); return nil }, []string{"a", "b", "c"}, []int{1, 2}, 20*time.Millisecond)
	if err != nil || len(pts) != 2 || pts[1].Batch != 2 || pts[1].Calls == 0 || pts[1].SamplesPerS <= 0 {
		t.Fatalf("points %+v, %v", pts, err)
	}
	if seen[0] != "a" || seen[1] != "b" || seen[3] != "a" {
		t.Errorf("texts not cycled in order: %v", seen[:4])
	}
}

// Every point of a run has its own request sequence (no query repeated from an earlier point
// for the engine's cache to answer), and a point's sequence is the same for every
// implementation.
func TestPointSeedsDiffer(t *testing.T) {
	seen := map[uint64]string{}
	for r := 0; r < 5; r++ {
		for _, n := range []int{1, 8, 32, 64, 1000} {
			s := pointSeed(r, n)
			if prev, ok := seen[s]; ok {
				t.Fatalf("round %d, %d callers: seed %d as %s", r, n, s, prev)
			}
			seen[s] = fmt.Sprintf("round %d, %d callers", r, n)
			if pointSeed(r, n) != s {
				t.Fatal("a point's seed changed")
			}
		}
	}
}
