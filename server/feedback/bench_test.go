package feedback

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// benchConcurrency is the number of concurrent writers the throughput and latency targets
// are stated for: 5,000 durable events/s and a p99 acknowledgement under 20 ms at 64.
const benchConcurrency = 64

// benchEvent returns a distinct event for the n-th Append of a benchmark.
func benchEvent(n uint64, ts time.Time) Event {
	return Event{
		EventID:   "evt-" + strconv.FormatUint(n, 10),
		UserID:    "user-" + strconv.FormatUint(n%10_000, 10),
		ItemID:    "item-" + strconv.FormatUint(n*7919%50_000, 10),
		Type:      "click",
		Timestamp: ts,
		Value:     1,
	}
}

func reportRate(b *testing.B, s *Store, start time.Time) {
	b.StopTimer()
	el := time.Since(start)
	st := s.Stats()
	b.ReportMetric(float64(st.Appended)/el.Seconds(), "events/s")
	if st.Commits > 0 {
		b.ReportMetric(float64(st.Appended)/float64(st.Commits), "events/commit")
	}
}

// BenchmarkAppendParallel appends one event per call from 64 goroutines (b.RunParallel with
// enough parallelism for GOMAXPROCS). "group-commit" is the store as configured by default;
// "commit-per-append" is the baseline without grouping (MaxBatchSize 1: every Append is its
// own transaction and fsync).
func BenchmarkAppendParallel(b *testing.B) {
	for _, bc := range []struct {
		name string
		cfg  Config
	}{
		{"group-commit", Config{}},
		{"commit-per-append", Config{MaxBatchSize: 1}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			s := openTest(b, b.TempDir(), bc.cfg)
			ts := time.Now().Add(-time.Minute)
			var n atomic.Uint64
			b.SetParallelism((benchConcurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := s.Append(context.Background(), benchEvent(n.Add(1), ts)); err != nil {
						b.Error(err)
						return
					}
				}
			})
			reportRate(b, s, start)
		})
	}
}

// BenchmarkAppendSerial appends one event per call from one goroutine: every Append pays a
// whole commit (it finds nobody to group with, so it does not wait for a group either).
func BenchmarkAppendSerial(b *testing.B) {
	s := openTest(b, b.TempDir(), Config{})
	ts := time.Now().Add(-time.Minute)
	b.ResetTimer()
	start := time.Now()
	for i := range b.N {
		if _, err := s.Append(context.Background(), benchEvent(uint64(i), ts)); err != nil {
			b.Fatal(err)
		}
	}
	reportRate(b, s, start)
}

// BenchmarkAckLatency measures how long an Append of one event takes to be acknowledged
// (durable) with a fixed number of writers in a closed loop, and reports its p50, p99 and
// maximum in milliseconds, exactly (every call is timed), with the throughput. "c64" is the
// project's target; "c16" and "c256" show how the defaults fare with fewer writers than
// MaxBatchSize and with more.
func BenchmarkAckLatency(b *testing.B) {
	for _, conc := range []int{benchConcurrency, 16, 256} {
		b.Run("c"+strconv.Itoa(conc), func(b *testing.B) { benchAckLatency(b, conc) })
	}
}

func benchAckLatency(b *testing.B, conc int) {
	s := openTest(b, b.TempDir(), Config{})
	ts := time.Now().Add(-time.Minute)
	var n atomic.Uint64
	lat := make([][]time.Duration, conc)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for w := range conc {
		calls := b.N / conc
		if w < b.N%conc {
			calls++
		}
		lat[w] = make([]time.Duration, 0, calls)
		wg.Go(func() {
			for range calls {
				t0 := time.Now()
				if _, err := s.Append(context.Background(), benchEvent(n.Add(1), ts)); err != nil {
					b.Error(err)
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	reportRate(b, s, start)
	all := slices.Concat(lat...)
	slices.Sort(all)
	if len(all) == 0 {
		return
	}
	q := func(p float64) float64 {
		return float64(all[min(len(all)-1, int(p*float64(len(all))))].Microseconds()) / 1000
	}
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
}
