package feedback

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

func openTest(t testing.TB, dir string, cfg Config) *Store {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet
	}
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// replayAll returns the events from fromSeq on, checking that seqs rise by one.
func replayAll(t *testing.T, s *Store, fromSeq uint64) ([]uint64, []Event) {
	t.Helper()
	var seqs []uint64
	var evs []Event
	err := s.Replay(fromSeq, func(seq uint64, e Event) error {
		if n := len(seqs); n > 0 && seq != seqs[n-1]+1 {
			return fmt.Errorf("seq %d after %d", seq, seqs[n-1])
		}
		seqs = append(seqs, seq)
		evs = append(evs, e)
		return nil
	})
	if err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return seqs, evs
}

func mustAppend(t *testing.T, s *Store, events ...Event) Result {
	t.Helper()
	res, err := s.Append(context.Background(), events...)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return res
}

func TestAppendReplayOrder(t *testing.T) {
	s := openTest(t, t.TempDir(), Config{})
	if s.LastSeq() != 0 {
		t.Fatalf("new store LastSeq = %d", s.LastSeq())
	}
	var want []Event
	for i := range 10 {
		var batch []Event
		for j := range i%3 + 1 {
			e := ev(fmt.Sprintf("e%d-%d", i, j))
			e.Type = DefaultTypes[(i+j)%len(DefaultTypes)]
			e.Value = float64(i*10 + j)
			e.Timestamp = ts0.Add(time.Duration(i) * 1234567 * time.Microsecond)
			batch = append(batch, e)
		}
		if res := mustAppend(t, s, batch...); res.Accepted != len(batch) || res.Duplicates != 0 {
			t.Fatalf("Append %d: %+v", i, res)
		}
		want = append(want, batch...)
	}
	if s.LastSeq() != uint64(len(want)) {
		t.Fatalf("LastSeq = %d, want %d", s.LastSeq(), len(want))
	}
	seqs, got := replayAll(t, s, 0)
	if len(got) != len(want) || seqs[0] != 1 {
		t.Fatalf("replayed %d events from seq %v, want %d from 1", len(got), seqs, len(want))
	}
	for i := range want {
		w := want[i]
		w.Timestamp = w.Timestamp.Truncate(time.Millisecond)
		if got[i] != w {
			t.Fatalf("event %d:\n got %+v\nwant %+v", i, got[i], w)
		}
	}
	// From the middle, and past the end.
	if seqs, _ := replayAll(t, s, 7); len(seqs) != len(want)-6 || seqs[0] != 7 {
		t.Fatalf("Replay(7) gave seqs %v", seqs)
	}
	if seqs, _ := replayAll(t, s, s.LastSeq()+1); len(seqs) != 0 {
		t.Fatalf("Replay past the end gave %v", seqs)
	}
	// An error from fn stops the replay and comes back.
	stop := errors.New("stop")
	n := 0
	err := s.Replay(1, func(uint64, Event) error {
		n++
		if n == 3 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || n != 3 {
		t.Fatalf("Replay with failing fn: %v after %d calls", err, n)
	}
}

func TestReplayManyChunks(t *testing.T) {
	s := openTest(t, t.TempDir(), Config{NoSync: true})
	const n = 2*replayChunk + 17
	batch := make([]Event, 0, 500)
	for i := range n {
		batch = append(batch, ev(fmt.Sprintf("e%d", i)))
		if len(batch) == cap(batch) || i == n-1 {
			mustAppend(t, s, batch...)
			batch = batch[:0]
		}
	}
	// fn may call back into the store: append while replaying; the replay stops at the
	// LastSeq it started with.
	seen := 0
	err := s.Replay(0, func(seq uint64, e Event) error {
		seen++
		if e.EventID != fmt.Sprintf("e%d", seq-1) {
			return fmt.Errorf("seq %d holds %s", seq, e.EventID)
		}
		if seq%replayChunk == 0 {
			_, err := s.Append(context.Background(), ev(fmt.Sprintf("late%d", seq)))
			return err
		}
		return nil
	})
	if err != nil || seen != n {
		t.Fatalf("Replay: %v, saw %d of %d", err, seen, n)
	}
	if s.LastSeq() != n+2 {
		t.Fatalf("LastSeq %d", s.LastSeq())
	}
}

func TestDedup(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Config{})
	a, b := ev("a"), ev("b")
	// Within one call: the second "a" is a duplicate of the first.
	if res := mustAppend(t, s, a, b, a); res.Accepted != 2 || res.Duplicates != 1 ||
		!slices.Equal(res.New, []bool{true, true, false}) || !slices.Equal(res.Seqs, []uint64{1, 2, 1}) {
		t.Fatalf("first append: %+v", res)
	}
	// Across calls, with the timestamp differing below a millisecond (stored truncated).
	a2 := a
	a2.Timestamp = a.Timestamp.Add(300 * time.Microsecond).In(time.FixedZone("x", -7200))
	if res := mustAppend(t, s, a2, ev("c")); res.Accepted != 1 || res.Duplicates != 1 {
		t.Fatalf("second append: %+v", res)
	}
	if st := s.Stats(); st.Appended != 3 || st.Duplicates != 2 || st.LastSeq != 3 {
		t.Fatalf("stats %+v", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Across reopen.
	s = openTest(t, dir, Config{})
	if res := mustAppend(t, s, ev("c"), b, ev("d")); res.Accepted != 1 || res.Duplicates != 2 ||
		!slices.Equal(res.New, []bool{false, false, true}) || !slices.Equal(res.Seqs, []uint64{3, 2, 4}) {
		t.Fatalf("append after reopen: %+v", res)
	}
	_, got := replayAll(t, s, 0)
	var ids []string
	for _, e := range got {
		ids = append(ids, e.EventID)
	}
	if strings.Join(ids, ",") != "a,b,c,d" {
		t.Fatalf("stored %v", ids)
	}
}

func TestConflict(t *testing.T) {
	s := openTest(t, t.TempDir(), Config{})
	mustAppend(t, s, ev("a"))
	changed := ev("a")
	changed.Value = 5
	for _, call := range [][]Event{
		{changed},
		{ev("new1"), changed}, // the new event is not stored either
		{ev("x"), func() Event { e := ev("x"); e.ItemID = "other"; return e }()}, // conflict inside one call
	} {
		res, err := s.Append(context.Background(), call...)
		if !errors.Is(err, ErrConflict) || res.Accepted != 0 || res.Seqs != nil {
			t.Fatalf("Append(%v) = %+v, %v; want ErrConflict", call, res, err)
		}
	}
	if s.LastSeq() != 1 || s.Stats().Conflicts != 3 || !s.Healthy() {
		t.Fatalf("after conflicts: LastSeq %d, stats %+v", s.LastSeq(), s.Stats())
	}
	_, got := replayAll(t, s, 0)
	if len(got) != 1 || got[0].Value != 1 {
		t.Fatalf("stored %+v", got)
	}
	// The refused ids are free: the events can still be appended as they are.
	if res := mustAppend(t, s, ev("new1"), ev("x")); res.Accepted != 2 {
		t.Fatalf("after conflict: %+v", res)
	}
}

func TestAppendRefusals(t *testing.T) {
	s := openTest(t, t.TempDir(), Config{MaxEventsPerAppend: 3})
	if res, err := s.Append(context.Background()); err != nil || res.Accepted != 0 || res.Seqs != nil {
		t.Fatalf("empty Append: %+v %v", res, err)
	}
	if _, err := s.Append(context.Background(), ev("a"), ev("b"), ev("c"), ev("d")); !errors.Is(err, ErrTooMany) {
		t.Fatalf("4 events with a limit of 3: %v", err)
	}
	bad := ev("b")
	bad.UserID = ""
	_, err := s.Append(context.Background(), ev("a"), bad)
	var ve *ValidationError
	if !errors.As(err, &ve) || ve.Field != "user_id" || !strings.Contains(err.Error(), "event 1") {
		t.Fatalf("invalid second event: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.Append(ctx, ev("a")); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled context: %v", err)
	}
	if s.LastSeq() != 0 || !s.Healthy() {
		t.Fatalf("refusals changed the store: LastSeq %d, healthy %v", s.LastSeq(), s.Healthy())
	}
}

func TestReopenRebuildsState(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Config{})
	for i := range 5 {
		mustAppend(t, s, ev(fmt.Sprintf("e%d", i)), ev(fmt.Sprintf("f%d", i)))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Config{})
	if s.LastSeq() != 10 {
		t.Fatalf("LastSeq after reopen = %d, want 10", s.LastSeq())
	}
	if res := mustAppend(t, s, ev("e3"), ev("g")); res.Accepted != 1 || res.Duplicates != 1 {
		t.Fatalf("dedup index after reopen: %+v", res)
	}
	seqs, got := replayAll(t, s, 11)
	if len(seqs) != 1 || seqs[0] != 11 || got[0].EventID != "g" {
		t.Fatalf("new event got seqs %v", seqs)
	}
}

func TestConcurrentAppends(t *testing.T) {
	s := openTest(t, t.TempDir(), Config{})
	const workers, each = 64, 20
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	newSeqs := make([][]uint64, workers) // the seqs each worker was given
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				e := ev(fmt.Sprintf("w%d-%d", w, i))
				e.UserID = fmt.Sprintf("u%d", w)
				// Every worker also resends its previous event: a duplicate under load.
				batch := []Event{e}
				if i > 0 {
					batch = append(batch, ev(fmt.Sprintf("w%d-%d", w, i-1)))
					batch[1].UserID = e.UserID
				}
				res, err := s.Append(context.Background(), batch...)
				if err != nil {
					errs <- err
					return
				}
				if res.Accepted != 1 || res.Duplicates != len(batch)-1 || !res.New[0] {
					errs <- fmt.Errorf("worker %d append %d: %+v", w, i, res)
					return
				}
				newSeqs[w] = append(newSeqs[w], res.Seqs[0])
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	const total = workers * each
	if s.LastSeq() != total {
		t.Fatalf("LastSeq %d, want %d", s.LastSeq(), total)
	}
	// The seqs handed out are distinct and are exactly 1..total.
	all := slices.Sorted(slices.Values(slices.Concat(newSeqs...)))
	for i, seq := range all {
		if seq != uint64(i+1) {
			t.Fatalf("seqs handed out: position %d holds %d", i, seq)
		}
	}
	seqs, got := replayAll(t, s, 0)
	if len(seqs) != total || len(all) != total {
		t.Fatalf("replayed %d, handed out %d seqs, want %d", len(seqs), len(all), total)
	}
	// Every event once, and each worker's events in the order it appended them.
	next := map[string]int{}
	for _, e := range got {
		var w, i int
		if _, err := fmt.Sscanf(e.EventID, "w%d-%d", &w, &i); err != nil {
			t.Fatal(err)
		}
		if want := next[e.UserID]; i != want {
			t.Fatalf("worker %d: event %d stored where %d was due", w, i, want)
		}
		next[e.UserID]++
	}
	st := s.Stats()
	if st.Appended != total || st.Duplicates != total-workers || st.Commits == 0 || st.Commits > total {
		t.Fatalf("stats %+v", st)
	}
	t.Logf("%d events in %d commits (%.1f per commit)", st.Appended, st.Commits, float64(st.Appended)/float64(st.Commits))
}

func TestSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Config{})
	if _, _, ok, err := s.GetSnapshot("popularity"); ok || err != nil {
		t.Fatalf("snapshot in a new store: ok %v, err %v", ok, err)
	}
	for i := range 5 {
		mustAppend(t, s, ev(fmt.Sprintf("e%d", i)))
	}
	data := []byte("counts up to 3")
	if err := s.PutSnapshot("popularity", 3, data); err != nil {
		t.Fatal(err)
	}
	data[0] = 'X' // the store keeps its own copy
	if err := s.PutSnapshot("empty", 0, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.PutSnapshot("future", 6, []byte("x")); err == nil {
		t.Fatal("snapshot past LastSeq accepted")
	}
	if err := s.PutSnapshot("", 1, nil); err == nil {
		t.Fatal("empty snapshot name accepted")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Config{})
	seq, got, ok, err := s.GetSnapshot("popularity")
	if err != nil || !ok || seq != 3 || string(got) != "counts up to 3" {
		t.Fatalf("GetSnapshot = %d %q %v %v", seq, got, ok, err)
	}
	if seq, got, ok, err := s.GetSnapshot("empty"); err != nil || !ok || seq != 0 || len(got) != 0 {
		t.Fatalf("empty snapshot = %d %q %v %v", seq, got, ok, err)
	}
	// Resume after the snapshot: only seqs 4 and 5.
	if seqs, _ := replayAll(t, s, seq+1); len(seqs) != 2 || seqs[0] != 4 {
		t.Fatalf("replay after snapshot: %v", seqs)
	}
	// Replacing keeps one snapshot per name.
	if err := s.PutSnapshot("popularity", 5, bytes.Repeat([]byte{7}, 100_000)); err != nil {
		t.Fatal(err)
	}
	if seq, got, ok, _ := s.GetSnapshot("popularity"); !ok || seq != 5 || len(got) != 100_000 {
		t.Fatalf("replaced snapshot: seq %d, %d bytes", seq, len(got))
	}
}

// TestWriteFailureQuota fills a capped file: bbolt's ErrMaxSizeReached is a real failed
// commit, as a full disk is. The store turns unhealthy, refuses writes fast, keeps what it
// acknowledged, and works again once reopened with room.
func TestWriteFailureQuota(t *testing.T) {
	dir := t.TempDir()
	var logged bytes.Buffer
	s := openTest(t, dir, Config{MaxFileBytes: 256 << 10, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	var acked []string
	var failure error
	for i := 0; failure == nil && i < 100_000; i++ {
		batch := make([]Event, 20)
		for j := range batch {
			batch[j] = ev(fmt.Sprintf("event-%06d-%02d-%s", i, j, strings.Repeat("p", 90)))
		}
		if _, err := s.Append(context.Background(), batch...); err != nil {
			failure = err
			break
		}
		for _, e := range batch {
			acked = append(acked, e.EventID)
		}
	}
	if !errors.Is(failure, ErrUnavailable) || !errors.Is(failure, berrors.ErrMaxSizeReached) {
		t.Fatalf("filling the file: %v", failure)
	}
	if s.Healthy() || !errors.Is(s.Err(), berrors.ErrMaxSizeReached) || s.Stats().Healthy {
		t.Fatalf("after a failed commit: healthy %v, err %v", s.Healthy(), s.Err())
	}
	if !strings.Contains(logged.String(), "unavailable") {
		t.Fatalf("failure not logged: %q", logged.String())
	}
	// Fails fast, even for a tiny event that would fit.
	start := time.Now()
	if _, err := s.Append(context.Background(), ev("tiny")); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("Append after failure: %v", err)
	}
	if d := time.Since(start); d > 500*time.Millisecond {
		t.Fatalf("refusal took %v", d)
	}
	if err := s.PutSnapshot("x", 0, nil); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("PutSnapshot after failure: %v", err)
	}
	// Reads still work.
	if _, got := replayAll(t, s, 0); len(got) != len(acked) {
		t.Fatalf("replayed %d of %d acknowledged", len(got), len(acked))
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Config{})
	if !s.Healthy() || s.LastSeq() != uint64(len(acked)) {
		t.Fatalf("reopened: healthy %v, LastSeq %d, want %d", s.Healthy(), s.LastSeq(), len(acked))
	}
	mustAppend(t, s, ev("tiny"))
}

// TestWriteFailureIO pulls the file out from under bbolt, so that the commit's writes fail as
// they would on an I/O error.
func TestWriteFailureIO(t *testing.T) {
	dir := t.TempDir()
	var file *os.File
	cfg := Config{openFile: func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		file = f
		return f, err
	}}
	s := openTest(t, dir, cfg)
	mustAppend(t, s, ev("before"))
	if err := file.Close(); err != nil {
		t.Fatal(err)
	}
	_, err := s.Append(context.Background(), ev("lost"))
	if !errors.Is(err, ErrUnavailable) || s.Healthy() {
		t.Fatalf("Append on a dead file: %v, healthy %v", err, s.Healthy())
	}
	t.Logf("failure: %v", err)
	for range 3 {
		if _, err := s.Append(context.Background(), ev("again")); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("later Append: %v", err)
		}
	}
	_ = s.Close() // unlocking a closed file fails; Close must still finish
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s = openTest(t, dir, Config{})
	if _, got := replayAll(t, s, 0); len(got) != 1 || got[0].EventID != "before" {
		t.Fatalf("after reopen: %+v", got)
	}
}

func TestLockedAndClosed(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Config{})
	start := time.Now()
	if _, err := Open(dir, Config{Timeout: 100 * time.Millisecond, Logger: quiet}); !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("second Open waited %v", d)
	}
	if filepath.Base(s.Path()) != FileName {
		t.Fatalf("Path %s", s.Path())
	}
	mustAppend(t, s, ev("a"))
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if s.Healthy() || !errors.Is(s.Err(), ErrClosed) {
		t.Fatalf("closed store: healthy %v, err %v", s.Healthy(), s.Err())
	}
	if _, err := s.Append(context.Background(), ev("b")); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
	if err := s.Replay(0, func(uint64, Event) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("Replay after Close: %v", err)
	}
	if _, _, _, err := s.GetSnapshot("x"); !errors.Is(err, ErrClosed) {
		t.Fatalf("GetSnapshot after Close: %v", err)
	}
	if err := s.PutSnapshot("x", 0, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("PutSnapshot after Close: %v", err)
	}
	// The lock is released.
	s2 := openTest(t, dir, Config{Timeout: 100 * time.Millisecond})
	if s2.LastSeq() != 1 {
		t.Fatalf("LastSeq %d", s2.LastSeq())
	}
}

// TestCloseWaitsForAppends closes while Appends are in flight: each either succeeds and is
// stored, or fails with ErrClosed; none fails otherwise or leaves the store unhealthy first.
func TestCloseWaitsForAppends(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Config{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	var acked []string
	for w := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				_, err := s.Append(context.Background(), ev(id))
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Errorf("Append: %v", err)
					return
				}
				mu.Lock()
				acked = append(acked, id)
				mu.Unlock()
			}
		})
	}
	time.Sleep(50 * time.Millisecond)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	s = openTest(t, dir, Config{})
	if s.LastSeq() != uint64(len(acked)) {
		t.Fatalf("LastSeq %d, acknowledged %d", s.LastSeq(), len(acked))
	}
}
