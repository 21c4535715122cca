package server

import (
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

// Measurements of the JetStream log: three replicas of the fake bundle in this process, on a
// stream of 3 replicas on a 3-node NATS cluster in this process, all on the loopback. The
// feedback path is the served one (HTTP, validation, JetStream publish and acknowledgement,
// the replica's own consumer, live state); only the model is fake, and feedback does not run
// it. Run:
//
//	go test ./server -run '^$' -bench 'BenchmarkCluster' -benchtime 2000x   (convergence: 2,000 events)
//	go test ./server -run '^$' -bench 'BenchmarkClusterFeedbackAck' -benchtime 10x   (10 s at 2,000 events/s)

// clusterReplicas starts the shared 3-node cluster (natsCluster) and three replicas on a new
// stream of 3 replicas.
func clusterReplicas(b *testing.B) []*testServer {
	b.Helper()
	prev := slog.Default() // the replicas log at start-up: keep the results readable
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	b.Cleanup(func() { slog.SetDefault(prev) })
	c := natsCluster(b)
	stream := nextStream()
	var rs []*testServer
	for range 3 {
		rs = append(rs, start(b, func(cfg *Config) {
			cfg.Feedback, cfg.FeedbackStream, cfg.FeedbackReplicas = c.URLs(), stream, 3
			f := false
			cfg.OnlineLearning = &f // the learner's CPU would be the machine's, not the log's
		}))
	}
	return rs
}

// quantiles returns the p50, p99 and largest of ds, in milliseconds.
func quantiles(ds []time.Duration) (p50, p99, top float64) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	slices.Sort(ds)
	at := func(q float64) float64 {
		i := min(len(ds)-1, int(q*float64(len(ds))))
		return float64(ds[i].Microseconds()) / 1000
	}
	return at(0.50), at(0.99), float64(ds[len(ds)-1].Microseconds()) / 1000
}

// BenchmarkClusterConvergence: time from a feedback request's acknowledgement by one replica
// to the event being visible in every replica's live state (what GET /v1/users/{id} reads),
// one event at a time, sent to the replicas in turn. Reports conv_p50_ms, conv_p99_ms,
// conv_max_ms.
func BenchmarkClusterConvergence(b *testing.B) {
	rs := clusterReplicas(b)
	base := time.Now().Add(-time.Hour).UnixMilli()
	var conv []time.Duration
	b.ResetTimer()
	for i := range b.N {
		e := event(fmt.Sprint("c", b.N, "-"), i, base)
		user := e["user_id"].(string)
		want := 0
		if v, ok := rs[0].live.User(user, 0); ok {
			want = v.Events
		}
		want++
		if st, body := postEvents(rs[i%3].url, e); st != 200 {
			b.Fatalf("feedback: %d %v", st, body)
		}
		acked := time.Now()
		for _, r := range rs {
			for {
				if v, ok := r.live.User(user, 0); ok && v.Events >= want {
					break
				}
				if time.Since(acked) > 10*time.Second {
					b.Fatalf("event %d not visible everywhere within 10s", i)
				}
				time.Sleep(20 * time.Microsecond)
			}
		}
		conv = append(conv, time.Since(acked))
	}
	b.StopTimer()
	p50, p99, top := quantiles(conv)
	b.ReportMetric(p50, "conv_p50_ms")
	b.ReportMetric(p99, "conv_p99_ms")
	b.ReportMetric(top, "conv_max_ms")
}

// BenchmarkClusterFeedbackAck: feedback requests of one event each, sent open-loop at 2,000
// a second (each on its own schedule, however long the earlier ones take) to the three
// replicas in turn; one iteration is one second of it. Reports the client's acknowledgement
// time ack_p50_ms, ack_p99_ms, ack_max_ms, the rate achieved and the failures (must be 0).
func BenchmarkClusterFeedbackAck(b *testing.B) {
	rs := clusterReplicas(b)
	const rate = 2000
	base := time.Now().Add(-time.Hour).UnixMilli()
	total := rate * b.N
	lat := make([]time.Duration, total)
	failed := make([]int, total) // the failed request's status (0: no answer)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i := range total {
		due := start.Add(time.Duration(i) * time.Second / rate)
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			t0 := time.Now()
			st, _ := postEvents(rs[i%3].url, event(fmt.Sprint("a", b.N, "-"), i, base))
			lat[i] = time.Since(t0)
			if st != 200 {
				failed[i] = st + 1
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	b.StopTimer()
	fails := 0
	statuses := map[int]int{}
	for _, f := range failed {
		if f != 0 {
			fails++
			statuses[f-1]++
		}
	}
	p50, p99, top := quantiles(lat)
	b.ReportMetric(p50, "ack_p50_ms")
	b.ReportMetric(p99, "ack_p99_ms")
	b.ReportMetric(top, "ack_max_ms")
	b.ReportMetric(float64(total)/took.Seconds(), "events/s")
	b.ReportMetric(float64(fails), "failed")
	if fails > 0 {
		b.Fatalf("%d of %d feedback requests failed (count by status, 0: no answer: %v)", fails, total, statuses)
	}
}
