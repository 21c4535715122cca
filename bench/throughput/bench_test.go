package throughput

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/ort"
)

func affineSession(b *testing.B) *ort.Session {
	b.Helper()
	rt, err := ort.Open(ort.Options{Provider: ort.ProviderCPU, IntraOpThreads: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { rt.Close() })
	s, err := rt.NewSession(affine, ort.SessionOptions{})
	if err != nil {
		b.Fatal(err)
	}
	return s
}

func affineInput(rows int) []ort.Tensor {
	x := make([]float32, rows*4)
	for i := range x {
		x[i] = float32(i%7) - 3
	}
	return []ort.Tensor{{Name: "x", Shape: []int64{int64(rows), 4}, Float32: x}}
}

// BenchmarkAffineRaw is the baseline of BenchmarkAffineBatcher: 64 rows per Session.Run.
func BenchmarkAffineRaw(b *testing.B) {
	s := affineSession(b)
	in := affineInput(64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Run(in); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(64*b.N)/b.Elapsed().Seconds(), "samples/s")
}

// BenchmarkAffineBatcher submits one row per call from parallel callers through the engine's
// batcher over the same session.
func BenchmarkAffineBatcher(b *testing.B) {
	s := affineSession(b)
	bt := batch.New(s, batch.Config{MaxBatch: 64, MaxWait: 200 * time.Microsecond})
	defer bt.Close()
	b.ReportAllocs()
	b.SetParallelism(16)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		in := affineInput(1)
		for pb.Next() {
			if _, err := bt.Submit(context.Background(), in); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "samples/s")
}
