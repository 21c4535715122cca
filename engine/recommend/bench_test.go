package recommend

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/explain"
	"github.com/llm4rec/llm4rec/engine/ort"
)

// Benchmarks of every stage and of the whole path, each beside its baseline: the raw ONNX
// Runtime session at the same batch. CI runs them once (-benchtime=1x) so they cannot rot;
// numbers come from longer runs (see the README).

func benchTexts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("a funny animated movie about toys that come alive, number %d, with a cowboy and a spaceman", i)
	}
	return out
}

func textBatch(b *testing.B, e *Engine, n int) []ort.Tensor {
	tb, err := e.tok.EncodeBatch(benchTexts(n))
	if err != nil {
		b.Fatal(err)
	}
	shape := []int64{int64(tb.Size), int64(tb.Len)}
	return []ort.Tensor{{Name: "input_ids", Shape: shape, Int64: tb.InputIDs}, {Name: "attention_mask", Shape: shape, Int64: tb.AttentionMask}}
}

func reportSamples(b *testing.B, samples int) {
	b.ReportMetric(float64(samples)*float64(b.N)/b.Elapsed().Seconds(), "samples/s")
}

// The text encoder at batch B: the raw session against the engine's batcher path with the
// same prebuilt batch.
func BenchmarkTextEncoder(b *testing.B) {
	e := testEngine(b)
	for _, n := range []int{1, 8, 32} {
		in := textBatch(b, e, n)
		b.Run(fmt.Sprintf("raw/b%d", n), func(b *testing.B) {
			s := e.sessions["text_encoder"]
			for b.Loop() {
				if _, err := s.Run(in); err != nil {
					b.Fatal(err)
				}
			}
			reportSamples(b, n)
		})
		b.Run(fmt.Sprintf("engine/b%d", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := e.text.Submit(context.Background(), in); err != nil {
					b.Fatal(err)
				}
			}
			reportSamples(b, n)
		})
	}
}

// Dynamic batching against batch-size-1 serving of the same graph: 32 concurrent callers with
// one text each, straight to the session (each Run has one row) or through a batcher.
func BenchmarkDynamicBatching(b *testing.B) {
	e := testEngine(b)
	one := textBatch(b, e, 1)
	const callers = 32
	run := func(b *testing.B, call func() error) {
		var wg sync.WaitGroup
		per := max(1, b.N/callers)
		b.ResetTimer()
		for g := 0; g < callers; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < per; i++ {
					if err := call(); err != nil {
						b.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		b.ReportMetric(float64(per*callers)/b.Elapsed().Seconds(), "samples/s")
	}
	b.Run("batch1-serving/c32", func(b *testing.B) {
		s := e.sessions["text_encoder"]
		run(b, func() error { _, err := s.Run(one); return err })
	})
	b.Run("dynamic/c32", func(b *testing.B) {
		bt := batch.New(e.sessions["text_encoder"], batch.Config{MaxBatch: 32, MaxWait: 2 * time.Millisecond,
			Pad: map[string]float64{"input_ids": float64(e.manifest.Tokenizer.PadID)}})
		defer bt.Close()
		run(b, func() error { _, err := bt.Submit(context.Background(), one); return err })
	})
}

// Stages of one request, each alone.
func BenchmarkStages(b *testing.B) {
	e := testEngine(b)
	rows := []int{0, 5, 9}
	b.Run("tokenize", func(b *testing.B) {
		for b.Loop() {
			e.tok.EncodeBatch(benchTexts(1))
		}
	})
	b.Run("fusion-inputs+retrieval", func(b *testing.B) {
		mods := modalities{emb: make([][]float32, len(e.manifest.Fusion.Modalities)), names: e.manifest.Fusion.Modalities}
		for b.Loop() {
			e.fusionInputs(rows, mods, nil)
		}
	})
	mods := modalities{emb: make([][]float32, len(e.manifest.Fusion.Modalities)), names: e.manifest.Fusion.Modalities}
	in, _ := e.fusionInputs(rows, mods, nil)
	b.Run("fusion/raw", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.sessions["fusion"].Run(in); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("fusion/engine", func(b *testing.B) {
		for b.Loop() {
			if _, err := e.fusion.Submit(context.Background(), in); err != nil {
				b.Fatal(err)
			}
		}
	})
	out, _ := e.fusion.Submit(context.Background(), in)
	b.Run("generator-step", func(b *testing.B) {
		for b.Loop() {
			if _, _, _, err := e.generate(out[0].Float32, e.bos, nil, nil, 0); err != nil {
				b.Fatal(err)
			}
		}
	})
	logits, _, _, _ := e.generate(out[0].Float32, e.bos, nil, nil, 0)
	seen := make([]bool, len(e.items))
	b.Run("rank+ips", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			e.rankTopK(rankExtra{}, logits, nil, seen, 0.5, 10, true, nil)
		}
	})
	b.Run("explain", func(b *testing.B) {
		p := e.explain.NewProfile(exRequest(rows))
		ev := []explain.Evidence{{Source: explain.FromHistory, Row: rows[0], Drop: 0.3, Rank: 2, RankWithout: 9},
			{Source: explain.FromHistory, Row: rows[1], Drop: 0.01, Rank: 2, RankWithout: 3}}
		for b.Loop() {
			for r := 0; r < 10; r++ {
				e.explain.Explain(p, r, ev, true)
			}
		}
	})
}

// The whole recommend path: one caller, and 32 concurrent callers (fusion batched across them).
func BenchmarkRecommend(b *testing.B) {
	e := testEngine(b)
	zero := 0.0
	req := func(i int) Request {
		n := len(e.items)
		return Request{History: []string{e.items[i%n].ID, e.items[(i*13+7)%n].ID, e.items[(i*31+3)%n].ID}, K: 10, ExcludeSeen: true, Alpha: &zero}
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, err := e.Recommend(context.Background(), req(i)); err != nil {
				b.Fatal(err)
			}
			i++
		}
		reportSamples(b, 1)
	})
	b.Run("explained", func(b *testing.B) {
		b.ReportAllocs()
		r := req(1)
		r.Explain = true
		for b.Loop() {
			if _, err := e.Recommend(context.Background(), r); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel/c32", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(16) // 16 x GOMAXPROCS(2) = 32 callers here
		var n int64
		var mu sync.Mutex
		b.RunParallel(func(pb *testing.PB) {
			i := 0
			for pb.Next() {
				if _, err := e.Recommend(context.Background(), req(i)); err != nil {
					b.Error(err)
					return
				}
				i++
			}
			mu.Lock()
			n += int64(i)
			mu.Unlock()
		})
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "samples/s")
	})
}

func exRequest(rows []int) explain.Request { return explain.Request{History: rows} }
