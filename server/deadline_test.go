package server

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/recommend"
)

// stuckEngine's Recommend runs for `hold` whatever its context says, as a graph run that
// cannot be interrupted does, and counts the runs still going.
type stuckEngine struct {
	Recommender
	hold    time.Duration
	running *atomic.Int64
}

func (s stuckEngine) Recommend(ctx context.Context, req recommend.Request) (*recommend.Response, error) {
	s.running.Add(1)
	defer s.running.Add(-1)
	time.Sleep(s.hold)
	return s.Recommender.Recommend(ctx, req)
}

// A request whose engine work outlasts the request timeout is answered 504 at the deadline,
// not when the work ends; the work keeps its in-flight slot until it ends, so the bound on
// requests in flight holds for work that outlived its answer.
func TestRecommendAnsweredAtTheDeadline(t *testing.T) {
	var running atomic.Int64
	backend := &fakeBackend{wrap: func(r Recommender) Recommender {
		return stuckEngine{Recommender: r, hold: 1500 * time.Millisecond, running: &running}
	}}
	s, err := NewWithBackend(Config{Bundle: fakeBundle, DataDir: t.TempDir(), RequestTimeout: 100 * time.Millisecond, MaxInFlight: 1}, backend, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s)
	t.Cleanup(func() { ts.client.CloseIdleConnections(); s.Shutdown() })
	start := time.Now()
	r := ts.do("POST", "/v1/recommend", "", `{"history": ["1"]}`)
	took := time.Since(start)
	if r.status != 504 || took > time.Second {
		t.Fatalf("%d after %v (%s), want 504 at the 100 ms deadline, before the 1.5 s work ends", r.status, took, r.raw)
	}
	if running.Load() != 1 {
		t.Fatalf("%d runs going after the answer, want the one that outlived it", running.Load())
	}
	// its slot is still taken: the next request is refused as over the in-flight limit
	if r := ts.do("POST", "/v1/recommend", "", `{"history": ["2"]}`); r.status != 503 || r.errCode() != "overloaded" {
		t.Fatalf("while the work runs: %d %s, want 503 overloaded", r.status, r.raw)
	}
	for i := 0; running.Load() != 0; i++ {
		if i > 300 {
			t.Fatal("the work never ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// the slot is given back just after the run ends: a new request is admitted again
	for i := 0; ; i++ {
		r := ts.do("POST", "/v1/recommend", "", `{"history": ["3"]}`)
		if r.status == 504 {
			break
		}
		if r.status != 503 || i > 100 {
			t.Fatalf("after the work ended: %d %s, want a new request admitted (and 504 again)", r.status, r.raw)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
