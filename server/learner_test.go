package server

import (
	"fmt"
	"slices"
	"testing"
	"time"
)

// The online learner's state (biases and residuals over the fused user state) is snapshotted
// at shutdown and restored on start: a restarted server ranks with the same correction and
// learns only what came after; a new bundle's learner starts fresh.
func TestLearnerRestoredAfterRestart(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{Bundle: fakeBundle, DataDir: dir}
	s, err := NewWithBackend(cfg, &fakeBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts := serve(t, s)
	now := time.Now().Unix()
	var events []map[string]any
	for i := range 20 {
		events = append(events, map[string]any{"event_id": fmt.Sprint("e", i), "user_id": fmt.Sprint("u", i%4),
			"item_id": fmt.Sprint(1 + i*13%100), "type": "click", "timestamp": now - 100 + int64(i)})
	}
	if r := ts.do("POST", "/v1/feedback", "", map[string]any{"events": events}); r.status != 200 {
		t.Fatalf("feedback: %d %s", r.status, r.raw)
	}
	waitLearned := func(ts *testServer, n uint64) *loaded {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			l := ts.engines.acquire()
			got := l.eng.Learner().Updates()
			l.release()
			if got == n && ts.learnLag() == 0 {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d updates, lag %d, want %d and 0", got, ts.learnLag(), n)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	correction := func(l *loaded) []float32 {
		// a user state with a history of rows 0, 5 and 7
		out := make([]float32, len(l.eng.Items()))
		l.eng.Learner().Add(fakeState([]int{0, 5, 7}), out)
		return out
	}
	l := waitLearned(ts, 20)
	before := correction(l)
	if l.eng.Learner().Dim() != fakeStateDim || !slices.ContainsFunc(before, func(v float32) bool { return v != 0 }) {
		t.Fatalf("learner of dim %d learned nothing", l.eng.Learner().Dim())
	}
	resid := 0.0
	for i := range before {
		resid = max(resid, l.eng.Learner().ResidualNorm(i))
	}
	if resid == 0 {
		t.Fatal("the residuals did not move")
	}
	ts.client.CloseIdleConnections()
	if err := s.Shutdown(); err != nil {
		t.Fatal(err)
	}

	s2, err := NewWithBackend(cfg, &fakeBackend{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ts2 := serve(t, s2)
	t.Cleanup(func() {
		ts2.client.CloseIdleConnections()
		s2.Shutdown()
	})
	l2 := ts2.engines.acquire()
	after, learned, updates := correction(l2), l2.learned.Load(), l2.eng.Learner().Updates()
	l2.release()
	if learned != 20 || updates != 20 {
		t.Fatalf("restored at seq %d with %d updates, want 20 and 20", learned, updates)
	}
	for i := range before {
		if d := before[i] - after[i]; d > 1e-6 || d < -1e-6 {
			t.Fatalf("item %d: correction %v before the restart, %v after", i, before[i], after[i])
		}
	}
	// one more event is learned on top of the restored state
	ev := map[string]any{"event_id": "late", "user_id": "u1", "item_id": "3", "type": "click", "timestamp": now}
	if r := ts2.do("POST", "/v1/feedback", "", ev); r.status != 200 {
		t.Fatalf("feedback: %d %s", r.status, r.raw)
	}
	waitLearned(ts2, 21)
	// a new bundle starts fresh and learns the whole log
	if r := ts2.do("POST", "/admin/models/reload", "", map[string]any{"bundle": fakeBundleReversed}); r.status != 200 {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	l3 := waitLearned(ts2, 21)
	if snapshotName(l3.eng) == snapshotName(l.eng) {
		t.Fatalf("the new bundle's learner would restore the old one's snapshot %s", snapshotName(l.eng))
	}
}
