package ort

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"strings"
	"sync"
	"testing"
)

// batchInvarianceTol bounds how much a row's output may change with the rest of its batch.
const batchInvarianceTol = 1e-6

// Tolerance of the conformance suite: outputs of the test graphs must match the reference
// computed here in float64 within this absolute difference (float32 rounding of a few
// multiply-adds; CUDA may use fused multiply-add).
const conformanceTol = 1e-5

type testWeights struct {
	W [][]float64 `json:"W"` // [4][3]
	B []float64   `json:"b"` // [3]
	E [][]float64 `json:"E"` // [10][2]
}

func loadWeights(t testing.TB) testWeights {
	t.Helper()
	raw, err := os.ReadFile("testdata/weights.json")
	if err != nil {
		t.Fatal(err)
	}
	var w testWeights
	if err := json.Unmarshal(raw, &w); err != nil {
		t.Fatal(err)
	}
	return w
}

func openRuntime(t testing.TB, p Provider) *Runtime {
	t.Helper()
	rt, err := Open(Options{Provider: p})
	if err != nil {
		t.Fatalf("open %s runtime: %v", p, err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func cudaRuntime(t *testing.T) *Runtime {
	t.Helper()
	rt, err := Open(Options{Provider: ProviderCUDA})
	if errors.Is(err, ErrCUDAUnusable) {
		t.Skipf("no usable CUDA here, conformance runs on CPU only: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rt.Close() })
	return rt
}

func TestConformanceCPU(t *testing.T)  { conformance(t, openRuntime(t, ProviderCPU)) }
func TestConformanceCUDA(t *testing.T) { conformance(t, cudaRuntime(t)) }

// conformance is the one suite every execution provider must pass.
func conformance(t *testing.T, rt *Runtime) {
	w := loadWeights(t)
	affine, err := rt.NewSession("testdata/affine.onnx", SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer affine.Close()
	embed, err := rt.NewSession("testdata/embed.onnx", SessionOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer embed.Close()
	if affine.Provider() != rt.Provider() {
		t.Fatalf("session provider %s, runtime %s", affine.Provider(), rt.Provider())
	}

	t.Run("io description", func(t *testing.T) {
		got := fmt.Sprint(affine.Inputs(), affine.Outputs(), embed.Inputs(), embed.Outputs())
		want := "[x float32[?,4]] [y float32[?,3] s float32[?]] [ids int64[?,?] mask float32[?,?]] [pooled float32[?,2]]"
		if got != want {
			t.Fatalf("io description\n got %s\nwant %s", got, want)
		}
	})

	t.Run("affine known values", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(1, 2))
		for _, batch := range []int{1, 3, 17, 64} {
			x := make([]float32, batch*4)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			y, s := runAffine(t, affine, x)
			for r := 0; r < batch; r++ {
				wy, ws := affineRef(w, x[r*4:r*4+4])
				for c := 0; c < 3; c++ {
					if d := math.Abs(float64(y[r*3+c]) - wy[c]); d > conformanceTol {
						t.Fatalf("batch %d row %d y[%d]=%v want %v (diff %g)", batch, r, c, y[r*3+c], wy[c], d)
					}
				}
				if d := math.Abs(float64(s[r]) - ws); d > conformanceTol {
					t.Fatalf("batch %d row %d s=%v want %v", batch, r, s[r], ws)
				}
			}
		}
	})

	t.Run("embed known values int64 input", func(t *testing.T) {
		ids := []int64{1, 2, 3, 0, 9, 9, 4, 5}
		mask := []float32{1, 1, 1, 0, 1, 1, 1, 1}
		out, err := embed.Run([]Tensor{
			{Name: "mask", Shape: []int64{2, 4}, Float32: mask},
			{Name: "ids", Shape: []int64{2, 4}, Int64: ids},
		})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(out[0].Shape) != "[2 2]" {
			t.Fatalf("pooled shape %v", out[0].Shape)
		}
		for r := 0; r < 2; r++ {
			for c := 0; c < 2; c++ {
				var num, den float64
				for k := 0; k < 4; k++ {
					m := float64(mask[r*4+k])
					num += w.E[ids[r*4+k]][c] * m
					den += m
				}
				if d := math.Abs(float64(out[0].Float32[r*2+c]) - num/den); d > conformanceTol {
					t.Fatalf("pooled[%d,%d]=%v want %v", r, c, out[0].Float32[r*2+c], num/den)
				}
			}
		}
	})

	t.Run("batch invariance", func(t *testing.T) {
		rng := rand.New(rand.NewPCG(3, 4))
		probe := []float32{0.5, -1.25, 2, 0.75}
		alone, _ := runAffine(t, affine, probe)
		for _, batch := range []int{2, 8, 33} {
			x := make([]float32, batch*4)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 3)
			}
			pos := rng.IntN(batch)
			copy(x[pos*4:], probe)
			y, _ := runAffine(t, affine, x)
			for c := 0; c < 3; c++ {
				// equal up to float32 rounding: a provider may pick another kernel per batch size
				if d := math.Abs(float64(y[pos*3+c] - alone[c])); d > batchInvarianceTol {
					t.Fatalf("batch %d: row %d output %v differs from alone %v", batch, pos, y[pos*3:pos*3+3], alone)
				}
			}
		}
	})

	t.Run("16 goroutines", func(t *testing.T) {
		var wg sync.WaitGroup
		errs := make(chan error, 16)
		for g := 0; g < 16; g++ {
			wg.Add(1)
			go func(g int) {
				defer wg.Done()
				for it := 0; it < 50; it++ {
					x := []float32{float32(g), float32(it), 1, -1, float32(g - it), 0, 2, float32(it) / 7}
					out, err := affine.Run([]Tensor{{Name: "x", Shape: []int64{2, 4}, Float32: x}})
					if err != nil {
						errs <- err
						return
					}
					for r := 0; r < 2; r++ {
						wy, _ := affineRef(w, x[r*4:r*4+4])
						for c := 0; c < 3; c++ {
							if math.Abs(float64(out[0].Float32[r*3+c])-wy[c]) > conformanceTol {
								errs <- fmt.Errorf("goroutine %d iteration %d: wrong output", g, it)
								return
							}
						}
					}
				}
			}(g)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
	})

	t.Run("bad inputs are errors", func(t *testing.T) {
		cases := []struct {
			name   string
			sess   *Session
			inputs []Tensor
			want   string
		}{
			{"unknown name", affine, []Tensor{{Name: "z", Shape: []int64{1, 4}, Float32: make([]float32, 4)}}, `unknown input "z"`},
			{"missing input", embed, []Tensor{{Name: "ids", Shape: []int64{1, 2}, Int64: []int64{1, 2}}}, `missing input "mask"`},
			{"duplicate", affine, []Tensor{{Name: "x", Shape: []int64{1, 4}, Float32: make([]float32, 4)}, {Name: "x", Shape: []int64{1, 4}, Float32: make([]float32, 4)}}, `input "x" given twice`},
			{"wrong dtype", affine, []Tensor{{Name: "x", Shape: []int64{1, 4}, Int64: make([]int64, 4)}}, `input "x" has dtype int64, graph wants float32`},
			{"no data", affine, []Tensor{{Name: "x", Shape: []int64{1, 4}}}, `input "x" has dtype no data`},
			{"wrong rank", affine, []Tensor{{Name: "x", Shape: []int64{4}, Float32: make([]float32, 4)}}, `input "x" has rank 1`},
			{"wrong fixed dim", affine, []Tensor{{Name: "x", Shape: []int64{1, 5}, Float32: make([]float32, 5)}}, `input "x" has shape [1 5]`},
			{"negative dim", affine, []Tensor{{Name: "x", Shape: []int64{-1, 4}, Float32: make([]float32, 4)}}, `negative dimension`},
			{"short data", affine, []Tensor{{Name: "x", Shape: []int64{2, 4}, Float32: make([]float32, 7)}}, `has 7 elements, shape [2 4] needs 8`},
			{"huge shape", affine, []Tensor{{Name: "x", Shape: []int64{1 << 40, 4}, Float32: make([]float32, 4)}}, `too large`},
		}
		for _, c := range cases {
			_, err := c.sess.Run(c.inputs)
			if err == nil || !errors.Is(err, ErrInput) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: got %v, want ErrInput containing %q", c.name, err, c.want)
			}
		}
		// An error inside ONNX Runtime (here an out-of-range Gather index) is an error, not a
		// crash. The CPU kernel checks indices; CUDA's does not (the engine never sends an
		// index it has not checked against the catalog), so there it must merely not crash.
		_, err := embed.Run([]Tensor{
			{Name: "ids", Shape: []int64{1, 1}, Int64: []int64{99}},
			{Name: "mask", Shape: []int64{1, 1}, Float32: []float32{1}},
		})
		if err == nil && rt.Provider() == ProviderCPU {
			t.Error("gather index 99 of 10 rows: want an error")
		}
	})

	t.Run("close is idempotent", func(t *testing.T) {
		s, err := rt.NewSession("testdata/affine.onnx", SessionOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Run([]Tensor{{Name: "x", Shape: []int64{1, 4}, Float32: make([]float32, 4)}}); !errors.Is(err, ErrClosed) {
			t.Fatalf("run after close: %v, want ErrClosed", err)
		}
	})
}

func runAffine(t testing.TB, s *Session, x []float32) (y, sum []float32) {
	t.Helper()
	out, err := s.Run([]Tensor{{Name: "x", Shape: []int64{int64(len(x) / 4), 4}, Float32: x}})
	if err != nil {
		t.Fatal(err)
	}
	return out[0].Float32, out[1].Float32
}

func affineRef(w testWeights, x []float32) ([]float64, float64) {
	y := make([]float64, 3)
	var s float64
	for c := 0; c < 3; c++ {
		v := w.B[c]
		for k := 0; k < 4; k++ {
			v += float64(x[k]) * w.W[k][c]
		}
		y[c] = math.Max(v, 0)
		s += y[c]
	}
	return y, s
}
