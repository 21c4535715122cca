package feedback

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/llm4rec/llm4rec/server/internal/natstest"
)

func openJS(t *testing.T, url string, edit func(*JetStreamConfig)) *JetStream {
	t.Helper()
	cfg := JetStreamConfig{URL: url, Stream: "T", OpenTimeout: 10 * time.Second}
	if edit != nil {
		edit(&cfg)
	}
	j, err := OpenJetStream(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

func jsEvent(id, user, item string) Event {
	return Event{EventID: id, UserID: user, ItemID: item, Type: "click", Timestamp: time.UnixMilli(1_700_000_000_000).UTC()}
}

func jsReplay(t *testing.T, l Log) (seqs []uint64, ids []string) {
	t.Helper()
	if err := l.Replay(1, func(seq uint64, e Event) error {
		seqs = append(seqs, seq)
		ids = append(ids, e.EventID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return seqs, ids
}

// An Append is in Replay when it returns; a retried event id is a duplicate with the first
// sequence number, another content under it a conflict that publishes nothing, and a
// repeat inside one call counts once.
func TestJetStreamAppendReplayDedup(t *testing.T) {
	n := natstest.Run(t)
	j := openJS(t, n.URL(), nil)
	ctx := context.Background()
	res, err := j.Append(ctx, jsEvent("a", "u1", "1"), jsEvent("b", "u1", "2"), jsEvent("a", "u1", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 2 || res.Duplicates != 1 || res.Seqs[0] != res.Seqs[2] || res.Seqs[0] == res.Seqs[1] {
		t.Fatalf("first append: %+v", res)
	}
	if seqs, ids := jsReplay(t, j); fmt.Sprint(ids) != "[a b]" || fmt.Sprint(seqs) != "[1 2]" {
		t.Fatalf("replay: %v %v", seqs, ids)
	}
	res, err = j.Append(ctx, jsEvent("b", "u1", "2"))
	if err != nil || res.Accepted != 0 || res.Duplicates != 1 || res.Seqs[0] != 2 {
		t.Fatalf("retry: %+v %v", res, err)
	}
	if _, err := j.Append(ctx, jsEvent("c", "u1", "3"), jsEvent("a", "u2", "1")); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict: %v", err)
	}
	if _, err := j.Append(ctx, jsEvent("d", "u1", "3"), jsEvent("d", "u1", "4")); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict inside a call: %v", err)
	}
	if j.LastSeq() != 2 {
		t.Fatalf("a refused call published something: last seq %d", j.LastSeq())
	}
	bad := jsEvent("e", "u1", "1")
	bad.Type = "nope"
	if _, err := j.Append(ctx, bad); !errors.Is(err, ErrInvalid) {
		t.Fatalf("invalid: %v", err)
	}
	if st := j.Stats(); st.Appended != 2 || st.Duplicates != 2 || st.Conflicts != 2 || !st.Healthy {
		t.Fatalf("stats: %+v", st)
	}
}

// Two replicas on one stream: what one appends the other replays in the same order with the
// same numbers; the same event sent to both is stored once; a replica opened later catches
// up before OpenJetStream returns; a snapshot one saves the other reads.
func TestJetStreamReplicasShareTheStream(t *testing.T) {
	n := natstest.Run(t)
	a := openJS(t, n.URL(), nil)
	b := openJS(t, n.URL(), nil)
	ctx := context.Background()
	for i := range 50 {
		l := a
		if i%2 == 1 {
			l = b
		}
		if _, err := l.Append(ctx, jsEvent(fmt.Sprint("e", i), fmt.Sprint("u", i%5), fmt.Sprint(i%7+1))); err != nil {
			t.Fatal(err)
		}
	}
	ra, err := a.Append(ctx, jsEvent("twice", "u9", "1"))
	if err != nil {
		t.Fatal(err)
	}
	rb, err := b.Append(ctx, jsEvent("twice", "u9", "1"))
	if err != nil {
		t.Fatal(err)
	}
	if ra.Accepted+rb.Accepted != 1 || ra.Seqs[0] != rb.Seqs[0] {
		t.Fatalf("same event at two replicas: %+v %+v", ra, rb)
	}
	if err := b.waitFor(ctx, a.LastSeq()); err != nil {
		t.Fatal(err)
	}
	sa, ia := jsReplay(t, a)
	sb, ib := jsReplay(t, b)
	if len(ia) != 51 || fmt.Sprint(sa, ia) != fmt.Sprint(sb, ib) {
		t.Fatalf("replicas differ:\n%v %v\n%v %v", sa, ia, sb, ib)
	}
	if err := a.PutSnapshot("online/x", 40, []byte("bias")); err != nil {
		t.Fatal(err)
	}
	if err := a.PutSnapshot("online/x", a.LastSeq()+1, []byte("bias")); err == nil {
		t.Fatal("a snapshot past the last seq was taken")
	}
	late := openJS(t, n.URL(), nil)
	if late.LastSeq() != a.LastSeq() {
		t.Fatalf("late replica at seq %d, stream at %d", late.LastSeq(), a.LastSeq())
	}
	if sl, il := jsReplay(t, late); fmt.Sprint(sl, il) != fmt.Sprint(sa, ia) {
		t.Fatalf("late replica differs: %v", il)
	}
	seq, data, ok, err := late.GetSnapshot("online/x")
	if err != nil || !ok || seq != 40 || string(data) != "bias" {
		t.Fatalf("snapshot: %d %q %v %v", seq, data, ok, err)
	}
	if _, _, ok, err := late.GetSnapshot("online/none"); ok || err != nil {
		t.Fatalf("missing snapshot: %v %v", ok, err)
	}
	// a name that is not a valid key is stored under its encoding; one too large for a NATS
	// message is refused with the reason
	if err := a.PutSnapshot("online/a b.c", 3, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if seq, data, ok, err := late.GetSnapshot("online/a b.c"); err != nil || !ok || seq != 3 || string(data) != "x" {
		t.Fatalf("odd name: %d %q %v %v", seq, data, ok, err)
	}
	if err := a.PutSnapshot("online/big", 3, make([]byte, 2<<20)); err == nil || !strings.Contains(err.Error(), "max_payload") {
		t.Fatalf("oversized snapshot: %v", err)
	}
}

// A message that repeats a stored event id (published after the server's dedup window, so
// the server stored it) and one that is not an event are skipped by every replica alike.
func TestJetStreamSkipsRepeatsAndGarbage(t *testing.T) {
	n := natstest.Run(t)
	a := openJS(t, n.URL(), nil)
	ctx := context.Background()
	if _, err := a.Append(ctx, jsEvent("x", "u1", "1")); err != nil {
		t.Fatal(err)
	}
	nc, err := nats.Connect(n.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	same := jsEvent("x", "u1", "1")
	other := jsEvent("x", "u1", "2")
	for _, data := range [][]byte{appendEncoded(nil, &same), appendEncoded(nil, &other), []byte("not an event")} {
		// no Nats-Msg-Id: the server's window does not catch these
		if err := nc.Publish("T.events", data); err != nil {
			t.Fatal(err)
		}
	}
	nc.Flush()
	if _, err := a.Append(ctx, jsEvent("y", "u1", "3")); err != nil {
		t.Fatal(err)
	}
	b := openJS(t, n.URL(), nil)
	for _, l := range []*JetStream{a, b} {
		if seqs, ids := jsReplay(t, l); fmt.Sprint(seqs, ids) != "[1 5] [x y]" {
			t.Fatalf("replay: %v %v", seqs, ids)
		}
		if l.Skipped() != 3 {
			t.Fatalf("skipped %d, want 3", l.Skipped())
		}
	}
}

// Settings that cannot work are refused before connecting; a stream that exists with another
// replica count is refused, not used.
func TestJetStreamConfigErrors(t *testing.T) {
	for _, c := range []JetStreamConfig{
		{}, {URL: "nats://x", Stream: "a.b"}, {URL: "nats://x", Replicas: 7}, {URL: "nats://x", TLSCert: "c.pem"},
	} {
		if _, err := OpenJetStream(c); err == nil || !strings.Contains(err.Error(), "jetstream config") {
			t.Fatalf("%+v: %v", c, err)
		}
	}
	n := natstest.Run(t)
	openJS(t, n.URL(), nil)
	_, err := OpenJetStream(JetStreamConfig{URL: n.URL(), Stream: "T", Replicas: 3, OpenTimeout: 5 * time.Second})
	if err == nil || !strings.Contains(err.Error(), "has 1 replicas, configured 3") {
		t.Fatalf("replica mismatch: %v", err)
	}
	if _, err := OpenJetStream(JetStreamConfig{URL: "nats://127.0.0.1:1", OpenTimeout: time.Second}); err == nil {
		t.Fatal("opened a log with no server")
	}
}

// After Close every method refuses; Close is idempotent.
func TestJetStreamClose(t *testing.T) {
	n := natstest.Run(t)
	j := openJS(t, n.URL(), nil)
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(context.Background(), jsEvent("a", "u", "1")); !errors.Is(err, ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	if err := j.Replay(1, func(uint64, Event) error { return nil }); !errors.Is(err, ErrClosed) {
		t.Fatalf("replay after close: %v", err)
	}
	if !errors.Is(j.Err(), ErrClosed) || j.Healthy() {
		t.Fatalf("err after close: %v", j.Err())
	}
}

// held waits (at most 10s) until exactly one of leases is held and returns its index; no
// sample ever finds two held.
func heldOne(t *testing.T, leases ...*Lease) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		who := -1
		for i, l := range leases {
			if l.Held() {
				if who >= 0 {
					t.Fatalf("leases %d and %d held at once", who, i)
				}
				who = i
			}
		}
		if who >= 0 {
			return who
		}
		if time.Now().After(deadline) {
			t.Fatal("no lease held within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// One holder at a time: released, the lease passes at once; a holder that vanishes without
// releasing loses it to another after the TTL, never while it could still count itself the
// holder.
func TestJetStreamLease(t *testing.T) {
	n := natstest.Run(t)
	ttl := func(c *JetStreamConfig) { c.LeaseTTL = 1500 * time.Millisecond }
	logs := []*JetStream{openJS(t, n.URL(), ttl), openJS(t, n.URL(), ttl), openJS(t, n.URL(), ttl)}
	var leases []*Lease
	for _, j := range logs {
		l, err := j.Lease("learner")
		if err != nil {
			t.Fatal(err)
		}
		leases = append(leases, l)
	}
	if _, err := logs[0].Lease("no spaces allowed"); err == nil {
		t.Fatal("a lease name with spaces was taken")
	}
	first := heldOne(t, leases...)
	for range 100 { // it stays with its holder while renewed
		if heldOne(t, leases...) != first {
			t.Fatal("the lease moved while its holder renewed it")
		}
		time.Sleep(10 * time.Millisecond)
	}
	leases[first].Release()
	start := time.Now()
	rest := slices.Delete(slices.Clone(leases), first, first+1)
	second := rest[heldOne(t, rest...)]
	if d := time.Since(start); d >= 1500*time.Millisecond {
		t.Fatalf("released lease taken after %s, no sooner than if it had expired", d)
	}
	// the holder vanishes: its connection closes without a release
	var gone *JetStream
	for i, l := range leases {
		if l == second {
			gone = logs[i]
		}
	}
	gone.nc.Close()
	start = time.Now()
	var last *Lease
	for _, l := range rest {
		if l != second {
			last = l
		}
	}
	for !last.Held() {
		if second.Held() && time.Since(start) > 750*time.Millisecond {
			t.Fatal("a holder cut off counted itself the holder past TTL/2")
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("the lease of a vanished holder was not taken within 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if second.Held() {
		t.Fatal("two holders")
	}
	if d := time.Since(start); d < 700*time.Millisecond {
		t.Fatalf("the lease was taken %s after its holder vanished, before it could expire", d)
	}
}

// Replay goes past its chunk of events, from any starting point, and stops at the last
// sequence number of the call.
func TestJetStreamReplayChunks(t *testing.T) {
	n := natstest.Run(t)
	j := openJS(t, n.URL(), nil)
	for b := range 3 {
		var batch []Event
		for i := range 900 {
			batch = append(batch, jsEvent(fmt.Sprint("e", b*900+i), "u", "1"))
		}
		if _, err := j.Append(context.Background(), batch...); err != nil {
			t.Fatal(err)
		}
	}
	for _, from := range []uint64{0, 1, 1024, 1025, 2000, 2700, 2701} {
		var got []uint64
		if err := j.Replay(from, func(seq uint64, e Event) error {
			if e.EventID != fmt.Sprint("e", seq-1) {
				t.Fatalf("seq %d holds %s", seq, e.EventID)
			}
			got = append(got, seq)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		first := max(from, 1)
		if want := 2700 - int(first) + 1; len(got) != want || (want > 0 && (got[0] != first || got[len(got)-1] != 2700)) {
			t.Fatalf("replay from %d: %d events, want %d", from, len(got), want)
		}
	}
	stop := errors.New("stop")
	calls := 0
	err := j.Replay(1, func(uint64, Event) error {
		if calls++; calls == 1500 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 1500 {
		t.Fatalf("stopped replay: %v after %d", err, calls)
	}
}

// A consumer that stops delivering is replaced: an Append waiting for its own event gets it
// from the new consumer, and events other replicas append arrive again.
func TestJetStreamStalledConsumerReplaced(t *testing.T) {
	n := natstest.Run(t)
	a := openJS(t, n.URL(), func(c *JetStreamConfig) { c.AckTimeout = 20 * time.Second })
	b := openJS(t, n.URL(), nil)
	ctx := context.Background()
	if _, err := a.Append(ctx, jsEvent("before", "u", "1")); err != nil {
		t.Fatal(err)
	}
	a.ccMu.Lock()
	a.cc.Stop() // as a consumer lost with its server and not yet recreated
	a.ccMu.Unlock()
	start := time.Now()
	res, err := a.Append(ctx, jsEvent("own", "u", "2"))
	if err != nil || res.Accepted != 1 {
		t.Fatalf("append: %+v %v", res, err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("the append waited %s for its event", d)
	}
	if _, ids := jsReplay(t, a); fmt.Sprint(ids) != "[before own]" {
		t.Fatalf("replay after the replacement: %v", ids)
	}
	a.ccMu.Lock()
	a.cc.Stop()
	a.ccMu.Unlock()
	if _, err := b.Append(ctx, jsEvent("other", "u", "3")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(15 * time.Second)
	for a.LastSeq() < b.LastSeq() {
		if time.Now().After(deadline) {
			t.Fatalf("a stalled consumer not replaced within 15s: at seq %d, stream at %d", a.LastSeq(), b.LastSeq())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, ids := jsReplay(t, a); fmt.Sprint(ids) != "[before own other]" {
		t.Fatalf("replay: %v", ids)
	}
}
