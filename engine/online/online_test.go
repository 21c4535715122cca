package online

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestUpdateRaisesTargetAndLowersCompetitors(t *testing.T) {
	a := New(4, 0, Config{Rate: 0.5, Penalty: 0.01})
	lp := []float32{-0.5, -1.5, -2, -3}
	if err := a.Update(nil, lp, 2); err != nil {
		t.Fatal(err)
	}
	if a.Value(2) <= 0 || a.Value(0) >= 0 || a.Value(1) >= 0 {
		t.Fatalf("biases %v %v %v", a.Value(0), a.Value(1), a.Value(2))
	}
	// repeated evidence for item 2 eventually ranks it first
	for i := 0; i < 50; i++ {
		a.Update(nil, lp, 2)
	}
	s := append([]float32(nil), lp...)
	a.Add(nil, s)
	if !(s[2] > s[0] && s[2] > s[1] && s[2] > s[3]) {
		t.Fatalf("scores after learning %v", s)
	}
	if a.Updates() != 51 {
		t.Fatalf("updates %d", a.Updates())
	}
	if err := a.Update(nil, lp[:2], 0); err == nil {
		t.Fatal("wrong length accepted")
	}
	if err := a.Update(nil, lp, 4); err == nil {
		t.Fatal("target outside the catalog accepted")
	}
}

// The anchor pulls the parameters back towards the shipped model (0) when evidence stops.
func TestPenaltyDecaysTowardsExportedModel(t *testing.T) {
	a := New(3, 2, Config{Rate: 0.5, Penalty: 0.5, Candidates: 1, Replay: -1})
	lp := []float32{-0.1, -5, -5}
	x := []float32{1, 0}
	a.Update(x, lp, 1)
	start, startU := a.Value(1), a.ResidualNorm(1)
	if startU == 0 {
		t.Fatal("the target's residual did not move")
	}
	// updates about item 0 (already top) barely move item 1 except by decay
	for i := 0; i < 40; i++ {
		a.Update(x, lp, 0)
	}
	if v := a.Value(1); !(math.Abs(v) < math.Abs(start)/10) {
		t.Fatalf("bias of item 1: %v -> %v, want decay towards 0", start, v)
	}
	if v := a.ResidualNorm(1); !(v < startU/10) {
		t.Fatalf("residual of item 1: %v -> %v, want decay towards 0", startU, v)
	}
}

// The residual learns what a bias cannot: two groups of users (states along different axes)
// prefer different items under the same model log-probabilities, and after learning each
// group's item ranks first for that group only.
func TestResidualSeparatesUsersByState(t *testing.T) {
	a := New(6, 4, Config{Rate: 0.2, ResidualRate: 0.5, Penalty: 0.001, Seed: 3})
	lp := []float32{-1, -1.2, -1.4, -1.6, -1.8, -2}
	sA := []float32{3, 0.1, 0, 0} // scale does not matter: states are taken at unit length
	sB := []float32{0, 0.1, 2, 0}
	for i := 0; i < 200; i++ {
		a.Update(sA, lp, 4)
		a.Update(sB, lp, 5)
	}
	argmax := func(s []float32) int {
		best := 0
		for i, v := range s {
			if v > s[best] {
				best = i
			}
		}
		return best
	}
	for _, c := range []struct {
		state []float32
		want  int
	}{{sA, 4}, {sB, 5}} {
		s := append([]float32(nil), lp...)
		a.Add(c.state, s)
		if got := argmax(s); got != c.want {
			t.Fatalf("state %v ranks item %d first (scores %v), want %d", c.state, got, s, c.want)
		}
	}
	// a biases-only learner on the same stream cannot rank both first
	b := New(6, 0, Config{Rate: 0.2, Penalty: 0.001})
	for i := 0; i < 200; i++ {
		b.Update(sA, lp, 4)
		b.Update(sB, lp, 5)
	}
	sa, sb := append([]float32(nil), lp...), append([]float32(nil), lp...)
	b.Add(sA, sa)
	b.Add(sB, sb)
	if argmax(sa) == 4 && argmax(sb) == 5 {
		t.Fatal("a bias alone separated the groups: the test does not exercise the residual")
	}
}

// Both parameters stay within MaxBias however long one item is pushed.
func TestBounded(t *testing.T) {
	a := New(3, 2, Config{Rate: 1, ResidualRate: 1, Penalty: 0.0001, MaxBias: 2})
	for i := 0; i < 500; i++ {
		a.Update([]float32{1, 1}, []float32{0, -10, -10}, 2)
	}
	for i := 0; i < 3; i++ {
		if math.Abs(a.Value(i)) > 2+1e-6 || a.ResidualNorm(i) > 2+1e-4 {
			t.Fatalf("item %d: bias %v residual %v past the bound 2", i, a.Value(i), a.ResidualNorm(i))
		}
	}
}

// The replay buffer keeps at most Replay interactions and is replayed: with it, an item that
// was learned early keeps more of its score through a long stream about other items than
// without it.
func TestReplayBufferBoundedAndReplayed(t *testing.T) {
	lp := []float32{-1, -1, -1, -1, -1, -1, -1, -1}
	run := func(replay int) (float64, int) {
		a := New(8, 2, Config{Rate: 0.1, Penalty: 0.01, Replay: replay, ReplaySteps: 2, Seed: 7})
		for i := 0; i < 20; i++ {
			a.Update([]float32{1, 0}, lp, 1)
		}
		r := rand.New(rand.NewPCG(1, 2))
		for i := 0; i < 200; i++ {
			a.Update([]float32{0, 1}, lp, 2+r.IntN(6))
		}
		s := make([]float32, 8)
		a.Add([]float32{1, 0}, s)
		return float64(s[1]), len(a.buf)
	}
	with, n := run(64)
	if n != 64 {
		t.Fatalf("buffer holds %d, want its bound 64", n)
	}
	without, n0 := run(-1)
	if n0 != 0 {
		t.Fatalf("buffer off holds %d", n0)
	}
	// a buffer of 64 mostly forgets the early item too; one of 1024 keeps it
	big, _ := run(1024)
	if !(big > without) {
		t.Fatalf("early item's score with a replay buffer %v (64: %v), without %v: want the buffer to keep more", big, with, without)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := New(5, 3, Config{})
	a.Update([]float32{1, 2, 3}, []float32{-1, -2, -3, -4, -5}, 3)
	a.Update([]float32{0, 0, 1}, []float32{-1, -2, -3, -4, -5}, 4)
	raw, _ := a.MarshalBinary()
	b := New(5, 3, Config{})
	if err := b.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	x := []float32{0.3, -0.2, 0.9}
	sa, sb := make([]float32, 5), make([]float32, 5)
	a.Add(x, sa)
	b.Add(x, sb)
	for i := 0; i < 5; i++ {
		if math.Abs(float64(sa[i]-sb[i])) > 1e-6 || math.Abs(a.Value(i)-b.Value(i)) > 1e-7 {
			t.Fatalf("item %d: %v vs %v", i, sa[i], sb[i])
		}
	}
	if b.Updates() != 2 {
		t.Fatalf("restored updates %d", b.Updates())
	}
	if err := New(4, 3, Config{}).UnmarshalBinary(raw); err == nil {
		t.Fatal("snapshot for another catalog accepted")
	}
	if err := New(5, 2, Config{}).UnmarshalBinary(raw); err == nil {
		t.Fatal("snapshot for another state length accepted")
	}
	if err := b.UnmarshalBinary(raw[:40]); err == nil {
		t.Fatal("truncated snapshot accepted")
	}
	// the biases-only layout of earlier versions restores the biases, residuals 0
	old := binary.LittleEndian.AppendUint64(nil, 5)
	old = binary.LittleEndian.AppendUint64(old, 9)
	for i := 0; i < 5; i++ {
		old = binary.LittleEndian.AppendUint32(old, math.Float32bits(float32(i)/10))
	}
	c := New(5, 3, Config{})
	if err := c.UnmarshalBinary(old); err != nil {
		t.Fatal(err)
	}
	if c.Updates() != 9 || math.Abs(c.Value(3)-0.3) > 1e-7 || c.ResidualNorm(3) != 0 {
		t.Fatalf("old snapshot restored as updates %d, bias %v, residual %v", c.Updates(), c.Value(3), c.ResidualNorm(3))
	}
}

// Add allocates nothing, whatever the catalog: the unit-length copy of the state is on the
// stack up to 512 dimensions; past that it is the one allocation.
func TestAddAllocatesNothing(t *testing.T) {
	for _, c := range []struct {
		dim    int
		allocs float64
	}{{64, 0}, {384, 0}, {512, 0}, {600, 1}} {
		a := New(1000, c.dim, Config{})
		st := make([]float32, c.dim)
		st[0] = 1
		lp := make([]float32, 1000)
		for i := 0; i < 50; i++ {
			a.Update(st, lp, i)
		}
		scores := make([]float32, 1000)
		if n := testing.AllocsPerRun(20, func() { a.Add(st, scores) }); n != c.allocs {
			t.Errorf("dimension %d: Add allocates %v times, want %v", c.dim, n, c.allocs)
		}
		if scores[0] == 0 {
			t.Errorf("dimension %d: no correction added", c.dim)
		}
	}
}

func BenchmarkUpdate(b *testing.B) {
	const n, d = 1682, 384
	a := New(n, d, Config{})
	r := rand.New(rand.NewPCG(1, 1))
	st := make([]float32, d)
	lp := make([]float32, n)
	for i := range lp {
		lp[i] = float32(-r.ExpFloat64() - 5)
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for k := range st {
			st[k] = float32(r.NormFloat64())
		}
		a.Update(st, lp, i%n)
	}
}

func BenchmarkAdd(b *testing.B) {
	const n, d = 1682, 384
	a := New(n, d, Config{})
	st := make([]float32, d)
	lp := make([]float32, n)
	for i := 0; i < 2000; i++ {
		st[i%d] = 1
		a.Update(st, lp, i%n)
	}
	scores := make([]float32, n)
	for b.Loop() {
		a.Add(st, scores)
	}
}

// The trend weight learns that what is chosen now is what is trending: one shared weight, so
// items never chosen but trending rise too; AddAt uses the feature it is given (nil: none);
// the weight survives a snapshot; a negative TrendRate keeps it off.
func TestTrendWeight(t *testing.T) {
	feat := []float32{2, 2, 2, 0, 0, 0, 1.5, 0}
	l := New(8, 0, Config{TrendRate: 0.2})
	l.SetFeature(func() []float32 { return feat })
	lp := make([]float32, 8)
	for i := range lp {
		lp[i] = -2
	}
	for i := 0; i < 60; i++ {
		l.Update(nil, lp, i%3) // only items 0-2, all trending, are chosen
	}
	if l.Beta() <= 0.1 {
		t.Fatalf("trend weight %v after 60 trending choices", l.Beta())
	}
	s := slices.Clone(lp)
	l.Add(nil, s)
	// item 6 was never chosen but trends: above the untrending items 3-5, 7
	for _, i := range []int{3, 4, 5, 7} {
		if s[6] <= s[i] {
			t.Fatalf("scores %v: trending item 6 not above untrending %d", s, i)
		}
	}
	none := slices.Clone(lp)
	l.AddAt(nil, none, nil)
	if none[6] != lp[6]+float32(l.Value(6)) {
		t.Fatalf("AddAt without a feature added a trend term: %v", none)
	}
	raw, _ := l.MarshalBinary()
	r := New(8, 0, Config{TrendRate: 0.2})
	if err := r.UnmarshalBinary(raw); err != nil || r.Beta() != l.Beta() {
		t.Fatalf("restored trend weight %v (want %v), %v", r.Beta(), l.Beta(), err)
	}
	// an earlier snapshot (OLR1) restores with no trend weight
	v1 := append([]byte(snapshotMagicV1), raw[4:len(raw)-8]...)
	if err := r.UnmarshalBinary(v1); err != nil || r.Beta() != 0 || math.Abs(r.Value(0)-l.Value(0)) > 1e-6 {
		t.Fatalf("OLR1 snapshot: beta %v, bias %v, %v", r.Beta(), r.Value(0), err)
	}
	off := New(8, 0, Config{TrendRate: -1})
	off.SetFeature(func() []float32 { return feat })
	for i := 0; i < 60; i++ {
		off.Update(nil, lp, i%3)
	}
	if off.Beta() != 0 {
		t.Fatalf("trend weight %v with TrendRate -1", off.Beta())
	}
}
