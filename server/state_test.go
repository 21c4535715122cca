package server

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/engine/retrieval"
	"github.com/llm4rec/llm4rec/server/feedback"
)

// serving returns the serving engine, released when the test ends.
func (ts *testServer) serving() *loaded {
	l := ts.engines.acquire()
	ts.t.Cleanup(l.release)
	return l
}

// countOf is the serving engine's interaction count of item id.
func (ts *testServer) countOf(id string) float64 {
	l := ts.serving()
	row, ok := l.eng.Row(id)
	if !ok {
		ts.t.Fatalf("item %s not in the catalog", id)
	}
	return l.eng.Stats().Count(row)
}

// Feedback acknowledged while a reload loads the next bundle (here one with the catalog in
// the opposite order) reaches the new engine: the user's history, the item's count by its
// new row, and co-occurrence with what the user had before the reload.
func TestFeedbackDuringReloadReachesNewEngine(t *testing.T) {
	ts := start(t, nil)
	now := time.Now().Unix()
	post := func(id, user, item string) {
		ev := map[string]any{"event_id": id, "user_id": user, "item_id": item, "type": "click", "timestamp": now}
		if r := ts.do("POST", "/v1/feedback", "", ev); r.status != 200 || r.body["accepted"] != 1.0 {
			t.Fatalf("feedback %s: %d %s", id, r.status, r.raw)
		}
	}
	post("before", "u1", "7")
	ts.backend.onOpen = func() { post("during", "u1", "42") }
	if r := ts.do("POST", "/admin/models/reload", "", map[string]any{"bundle": fakeBundleReversed}); r.status != 200 {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	ts.backend.onOpen = nil
	l := ts.serving()
	if l.bundle != fakeBundleReversed || l.eng.Items()[0].ID != "100" {
		t.Fatalf("serving %s, first item %s", l.bundle, l.eng.Items()[0].ID)
	}
	if c7, c42 := ts.countOf("7"), ts.countOf("42"); c7 != 1 || c42 != 1 {
		t.Fatalf("new engine counts: item 7 %v, item 42 %v, want 1 each", c7, c42)
	}
	r7, _ := l.eng.Row("7")
	r42, _ := l.eng.Row("42")
	if co := l.eng.Stats().CoOccurrence(r42, r7); co != 1 {
		t.Fatalf("co-occurrence of 42 and 7 in the new engine: %v", co)
	}
	if r := ts.do("GET", "/v1/users/u1", "", nil); r.status != 200 || fmt.Sprint(r.body["history"]) != "[7 42]" {
		t.Fatalf("user after reload: %d %s", r.status, r.raw)
	}
	if r := ts.do("GET", "/v1/items/42", "", nil); r.body["interactions"] != 1.0 {
		t.Fatalf("item after reload: %s", r.raw)
	}
	// and feedback after the reload counts once, not twice
	post("after", "u2", "42")
	if c := ts.countOf("42"); c != 2 {
		t.Fatalf("item 42 counted %v times, want 2", c)
	}
}

// Each engine's learner follows the log from its own snapshot: after a reload to a model
// without one, the new learner learns every event, however far the previous learner had got.
func TestLearnerSequencePerEngine(t *testing.T) {
	ts := start(t, nil)
	var events []map[string]any
	for i := range 12 {
		events = append(events, map[string]any{"event_id": fmt.Sprint("e", i), "user_id": fmt.Sprint("u", i%3),
			"item_id": fmt.Sprint(1 + i*7%100), "type": "click", "timestamp": time.Now().Unix() - 100 + int64(i)})
	}
	if r := ts.do("POST", "/v1/feedback", "", map[string]any{"events": events}); r.status != 200 {
		t.Fatalf("feedback: %d %s", r.status, r.raw)
	}
	waitLearned := func(what string) *loaded {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			l := ts.engines.acquire()
			n := l.eng.Learner().Updates()
			l.release()
			if n == 12 && ts.learnLag() == 0 {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d updates, lag %d, want 12 and 0", what, n, ts.learnLag())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	first := waitLearned("first engine")
	if r := ts.do("POST", "/admin/models/reload", "", map[string]any{"bundle": fakeBundleReversed}); r.status != 200 {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	if next := waitLearned("reloaded engine"); next == first {
		t.Fatal("the reload kept the first engine")
	}
}

// A learner snapshot that cannot be decoded is reported, not ignored: an error in the log, the
// readiness answer names it, a metric counts it; and the learner starts fresh and learns the
// whole log (never the snapshot's sequence with biases it does not cover).
func TestCorruptSnapshotReported(t *testing.T) {
	dir := t.TempDir()
	store, err := feedback.Open(dir, feedback.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := feedback.Event{EventID: "e1", UserID: "u1", ItemID: "5", Type: "click", Timestamp: time.Now().Add(-time.Minute)}
	if _, err := store.Append(t.Context(), e); err != nil {
		t.Fatal(err)
	}
	name := snapshotName(newFakeEngine(recommend.Config{}, false))
	if err := store.PutSnapshot(name, 1, []byte("not a learner snapshot")); err != nil {
		t.Fatal(err)
	}
	if err := store.Close(); err != nil {
		t.Fatal(err)
	}
	ts := start(t, func(c *Config) { c.DataDir = dir })
	r := ts.do("GET", "/healthz/ready", "", nil)
	if r.status != 200 || !strings.Contains(fmt.Sprint(r.body["online_snapshot"]), name) {
		t.Fatalf("ready: %d %s", r.status, r.raw)
	}
	if m := ts.do("GET", "/metrics", "", nil); !strings.Contains(string(m.raw), "llm4rec_online_snapshot_errors_total 1") {
		t.Fatal("metrics do not count the unusable snapshot")
	}
	deadline := time.Now().Add(10 * time.Second)
	for l := ts.serving(); l.eng.Learner().Updates() != 1 || l.learned.Load() != 1; l = ts.serving() {
		if time.Now().After(deadline) {
			t.Fatal("the fresh learner did not learn the logged event")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// a reload that finds a good snapshot clears the report (the learner is idle: nothing is
	// left to learn, so the snapshot's biases and sequence agree)
	ts.snapshot(ts.serving())
	if r := ts.do("POST", "/admin/models/reload", "", nil); r.status != 200 {
		t.Fatalf("reload: %d %s", r.status, r.raw)
	}
	if r := ts.do("GET", "/healthz/ready", "", nil); r.status != 200 || r.body["online_snapshot"] != nil {
		t.Fatalf("ready after a good snapshot: %d %s", r.status, r.raw)
	}
	if l := ts.serving(); l.learned.Load() != 1 || l.eng.Learner().Updates() != 1 {
		t.Fatalf("restored at seq %d with %d updates, want 1 and 1", l.learned.Load(), l.eng.Learner().Updates())
	}
}

// Feedback posted throughout reloads is counted exactly once by the engine serving after
// them: none lost in the window between loading the next bundle and swapping it in.
func TestFeedbackAcrossReloadsCountedOnce(t *testing.T) {
	ts := start(t, nil)
	now := time.Now().Unix()
	var backlog []map[string]any
	for i := range 10_000 { // a long log: a reload that replayed it would leave a window to lose events in
		backlog = append(backlog, map[string]any{"event_id": fmt.Sprint("b", i), "user_id": fmt.Sprint("u", i%50),
			"item_id": fmt.Sprint(1 + i%100), "type": "view", "timestamp": now})
	}
	for i := 0; i < len(backlog); i += 500 {
		if r := ts.do("POST", "/v1/feedback", "", map[string]any{"events": backlog[i : i+500]}); r.status != 200 {
			t.Fatalf("backlog: %d %s", r.status, r.raw)
		}
	}
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		n := 0
		for {
			select {
			case <-stop:
				done <- n
				return
			default:
			}
			ev := map[string]any{"event_id": fmt.Sprint("live", n), "user_id": "w", "item_id": fmt.Sprint(1 + n%100), "type": "click", "timestamp": now}
			if r := ts.do("POST", "/v1/feedback", "", ev); r.status != 200 {
				t.Errorf("feedback: %d %s", r.status, r.raw)
			}
			n++
		}
	}()
	for _, b := range []string{fakeBundleReversed, fakeBundle, fakeBundleReversed} {
		if r := ts.do("POST", "/admin/models/reload", "", map[string]any{"bundle": b}); r.status != 200 {
			t.Fatalf("reload: %d %s", r.status, r.raw)
		}
	}
	close(stop)
	n := <-done
	l := ts.serving()
	var total float64
	for r := range l.eng.Items() {
		total += l.eng.Stats().Count(r)
	}
	if want := float64(len(backlog) + n); total != want {
		t.Fatalf("the serving engine counts %v interactions, want %v (%d posted during the reloads)", total, want, n)
	}
}

// The engine's sessions run one intra-op thread unless told otherwise; -1 asks for ONNX
// Runtime's own default (0 in ort.Options); below -1 is refused.
func TestIntraOpThreadsDefault(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.IntraOpThreads != 1 || c.ORTIntraOpThreads() != 1 {
		t.Fatalf("default %d (ort %d), want 1", c.IntraOpThreads, c.ORTIntraOpThreads())
	}
	c.IntraOpThreads = -1
	if c.ORTIntraOpThreads() != 0 || c.Validate() != nil {
		t.Fatalf("-1: ort %d, %v", c.ORTIntraOpThreads(), c.Validate())
	}
	c.IntraOpThreads = -2
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "intra_op_threads") {
		t.Fatalf("-2: %v", err)
	}
}

// Text encoder replicas: 0 (the engine's choice) by default, 1 to 64 taken, the edges refused.
func TestTextReplicasSetting(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.TextReplicas != 0 || c.Validate() != nil {
		t.Fatalf("default %d: %v", c.TextReplicas, c.Validate())
	}
	for _, n := range []int{1, 64} {
		c.TextReplicas = n
		if err := c.Validate(); err != nil {
			t.Fatalf("%d: %v", n, err)
		}
	}
	for _, n := range []int{-1, 65} {
		c.TextReplicas = n
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "text_replicas") {
			t.Fatalf("%d: %v", n, err)
		}
	}
}

// The retrieval index defaults to auto and reaches the engine as configured; an unknown kind
// is refused before anything loads.
func TestIndexSetting(t *testing.T) {
	c := Config{}.WithDefaults()
	if c.Index != "auto" || c.IndexKind() != retrieval.IndexAuto || c.Validate() != nil {
		t.Fatalf("default %q (%q): %v", c.Index, c.IndexKind(), c.Validate())
	}
	c.Index = "faiss"
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "index") {
		t.Fatalf("unknown index: %v", err)
	}
	for kind, want := range map[string]retrieval.IndexKind{"": retrieval.IndexAuto, " IVF": retrieval.IndexIVF, "exact": retrieval.IndexExact} {
		b := &indexBackend{}
		startWith(t, Config{Bundle: fakeBundle, Index: kind}, b)
		if got := b.kind.Load(); got == nil || *got != want {
			t.Errorf("index %q: the engine was opened with %v, want %q", kind, got, want)
		}
	}
}

// indexBackend is the fake backend, keeping the index kind the engine is opened with.
type indexBackend struct {
	fakeBackend
	kind atomic.Pointer[retrieval.IndexKind]
}

func (b *indexBackend) Open(dir string, cfg recommend.Config) (Recommender, error) {
	b.kind.Store(&cfg.Index)
	return b.fakeBackend.Open(dir, cfg)
}
