package online

import (
	"math"
	"testing"
)

func TestUpdateRaisesTargetAndLowersCompetitors(t *testing.T) {
	a := NewBias(4, Config{Rate: 0.5, Penalty: 0.01})
	lp := []float32{-0.5, -1.5, -2, -3}
	if err := a.Update(lp, 2); err != nil {
		t.Fatal(err)
	}
	if a.Value(2) <= 0 || a.Value(0) >= 0 || a.Value(1) >= 0 {
		t.Fatalf("biases %v %v %v", a.Value(0), a.Value(1), a.Value(2))
	}
	// repeated evidence for item 2 eventually ranks it first
	for i := 0; i < 50; i++ {
		a.Update(lp, 2)
	}
	s := append([]float32(nil), lp...)
	a.Add(s)
	if !(s[2] > s[0] && s[2] > s[1] && s[2] > s[3]) {
		t.Fatalf("scores after learning %v", s)
	}
	if a.Updates() != 51 {
		t.Fatalf("updates %d", a.Updates())
	}
	if err := a.Update(lp[:2], 0); err == nil {
		t.Fatal("wrong length accepted")
	}
}

// The penalty pulls biases back towards the exported model (0) when evidence stops.
func TestPenaltyDecaysTowardsExportedModel(t *testing.T) {
	a := NewBias(3, Config{Rate: 0.5, Penalty: 0.5, Candidates: 1})
	lp := []float32{-0.1, -5, -5}
	a.Update(lp, 1)
	start := a.Value(1)
	// updates about item 0 (already top) barely move item 1 except by decay
	for i := 0; i < 40; i++ {
		a.Update(lp, 0)
	}
	if v := a.Value(1); !(math.Abs(v) < math.Abs(start)/10) {
		t.Fatalf("bias of item 1: %v -> %v, want decay towards 0", start, v)
	}
}

func TestSnapshotRoundTrip(t *testing.T) {
	a := NewBias(5, Config{})
	a.Update([]float32{-1, -2, -3, -4, -5}, 3)
	raw, _ := a.MarshalBinary()
	b := NewBias(5, Config{})
	if err := b.UnmarshalBinary(raw); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if math.Abs(a.Value(i)-b.Value(i)) > 1e-7 {
			t.Fatalf("item %d: %v vs %v", i, a.Value(i), b.Value(i))
		}
	}
	if err := NewBias(4, Config{}).UnmarshalBinary(raw); err == nil {
		t.Fatal("snapshot for another catalog accepted")
	}
	if err := b.UnmarshalBinary(raw[:10]); err == nil {
		t.Fatal("truncated snapshot accepted")
	}
}
