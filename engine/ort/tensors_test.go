package ort

import (
	"errors"
	"math"
	"slices"
	"sync"
	"testing"
)

// Runs of the same input shapes reuse the session's tensors: each run's answer is its own
// (no stale input, no result overwritten by the next run), a warm run allocates a handful of
// times instead of a dozen per tensor, the idle sets stay within their bounds, and Close
// releases them.
func TestTensorsReusedAcrossRuns(t *testing.T) {
	w := loadWeights(t)
	rt := openRuntime(t, ProviderCPU)
	s, err := rt.NewSession("testdata/affine.onnx", SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	check := func(x, y []float32) {
		t.Helper()
		for r := 0; r < len(x)/4; r++ {
			wy, _ := affineRef(w, x[r*4:r*4+4])
			for c := 0; c < 3; c++ {
				if d := math.Abs(float64(y[r*3+c]) - wy[c]); d > conformanceTol {
					t.Fatalf("row %d: y %v, want %v", r, y[r*3:r*3+3], wy)
				}
			}
		}
	}
	x1 := []float32{1, 2, 3, 4, -1, 0.5, 2, 0}
	x2 := []float32{0.25, -3, 1, 1, 2, 2, -2, 5}
	y1, _ := runAffine(t, s, x1) // makes the set; the outputs come from ONNX Runtime
	y2, _ := runAffine(t, s, x2) // outputs now bound to the set's tensors
	y3, _ := runAffine(t, s, x1)
	check(x1, y1)
	check(x2, y2)
	check(x1, y3)
	y4, _ := runAffine(t, s, x2)
	check(x1, y3) // y3 is a copy: the next run did not overwrite it
	check(x2, y4)

	in := []Tensor{{Name: "x", Shape: []int64{2, 4}, Float32: x1}}
	allocs := testing.AllocsPerRun(50, func() {
		if _, err := s.Run(in); err != nil {
			t.Fatal(err)
		}
	})
	// the result only (a slice, one shape array, a data slice per output: two here): 4
	// measured with the set's I/O binding and the inputs ordered on the stack; 10 through
	// onnxruntime_go's Run (its two arrays of C values and a handle per tensor), 32 before the
	// tensors were kept
	if allocs > 4 {
		t.Fatalf("a warm run allocates %v times", allocs)
	}
	if !boundSetIdle(s) {
		t.Fatal("no idle tensor set of this CPU session holds an I/O binding")
	}

	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 20; i++ {
				if _, err := s.Run(in); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	s.setsMu.Lock()
	for key, idle := range s.sets {
		if len(idle) > maxIdleSetsPerShape {
			t.Errorf("shape %x: %d idle sets, at most %d", key, len(idle), maxIdleSetsPerShape)
		}
	}
	if s.setBytes <= 0 || s.setBytes > maxIdleSetBytes {
		t.Errorf("idle sets hold %d bytes", s.setBytes)
	}
	s.setsMu.Unlock()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s.sets != nil || s.setBytes != 0 {
		t.Fatalf("after Close: %d shapes, %d bytes idle", len(s.sets), s.setBytes)
	}
}

// boundSetIdle reports whether an idle tensor set of the session runs through an I/O binding.
func boundSetIdle(s *Session) bool {
	s.setsMu.Lock()
	defer s.setsMu.Unlock()
	for _, idle := range s.sets {
		for _, ts := range idle {
			if ts.binding != nil {
				return true
			}
		}
	}
	return false
}

// RunView lends the outputs Run would copy: the same values on the first run of a shape (ONNX
// Runtime's own outputs) and on later ones (the kept tensors), no allocation once warm on the
// CPU, and use's error comes back as it is, the session still serving afterwards.
func TestRunViewLendsOutputsWithoutAllocating(t *testing.T) {
	rt := openRuntime(t, ProviderCPU)
	s, err := rt.NewSession("testdata/affine.onnx", SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in := []Tensor{{Name: "x", Shape: []int64{2, 4}, Float32: []float32{1, 2, 3, 4, -1, 0.5, 2, 0}}}
	want, err := s.Run(in) // the set's first run is Run's
	if err != nil {
		t.Fatal(err)
	}
	in2 := []Tensor{{Name: "x", Shape: []int64{3, 4}, Float32: make([]float32, 12)}}
	var got [][]float32
	record := func(outs []Tensor) error {
		got = got[:0]
		for _, o := range outs {
			got = append(got, slices.Clone(o.Float32))
		}
		return nil
	}
	for run := 0; run < 3; run++ { // a new shape, then the kept tensors twice
		if err := s.RunView(in, record); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("run %d: %d outputs, want %d", run, len(got), len(want))
		}
		for i := range want {
			if !slices.Equal(got[i], want[i].Float32) {
				t.Fatalf("run %d output %d: %v, want %v", run, i, got[i], want[i].Float32)
			}
		}
		if err := s.RunView(in2, record); err != nil { // another shape between
			t.Fatal(err)
		}
	}
	var sum float32
	read := func(outs []Tensor) error {
		for _, o := range outs {
			sum += o.Float32[0]
		}
		return nil
	}
	if a := testing.AllocsPerRun(50, func() {
		if err := s.RunView(in, read); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("a warm RunView allocates %v times", a)
	}
	stop := errors.New("stop")
	if err := s.RunView(in, func([]Tensor) error { return stop }); !errors.Is(err, stop) {
		t.Fatalf("use's error: got %v", err)
	}
	again, err := s.Run(in)
	if err != nil || !slices.Equal(again[0].Float32, want[0].Float32) {
		t.Fatalf("after use failed: %v, %v", again, err)
	}
	if err := s.RunView([]Tensor{{Name: "nope", Shape: []int64{1}, Float32: []float32{1}}}, read); !errors.Is(err, ErrInput) {
		t.Fatalf("bad input: %v", err)
	}
}
