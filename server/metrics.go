package server

import (
	"bytes"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// metrics are the server's Prometheus series, in their own registry.
type metrics struct {
	reg         *prometheus.Registry
	requests    *prometheus.CounterVec
	latency     *prometheus.HistogramVec
	batchSize   *prometheus.HistogramVec
	runSeconds  *prometheus.HistogramVec
	feedbackAck prometheus.Histogram
	reloads     *prometheus.CounterVec
	// snapshotErrors counts learner snapshots that could not be read or decoded.
	snapshotErrors prometheus.Counter
	// bodyRefused counts requests answered 503 because the body memory budget was full.
	bodyRefused prometheus.Counter
	queueWait   *prometheus.HistogramVec
	// addedItems is how many items POST /admin/items added to the served catalog.
	addedItems prometheus.Gauge
}

func newMetrics(s *Server) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm4rec_http_requests_total",
		Help: "HTTP requests by route and status."}, []string{"route", "status"})
	m.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llm4rec_http_request_duration_seconds",
		Help: "HTTP request latency by route and status.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}, []string{"route", "status"})
	m.batchSize = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llm4rec_batch_size",
		Help: "Rows per graph run formed by the dynamic batcher.", Buckets: []float64{1, 2, 4, 8, 16, 32, 64, 128, 256}}, []string{"graph"})
	m.runSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llm4rec_onnx_run_seconds",
		Help: "ONNX Runtime run time per graph and execution provider.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"graph", "provider"})
	m.feedbackAck = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "llm4rec_feedback_ack_seconds",
		Help: "Time from a feedback request's arrival to its events being durable.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14)})
	m.reloads = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "llm4rec_model_reloads_total",
		Help: "Model reloads by result."}, []string{"result"})
	m.snapshotErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "llm4rec_online_snapshot_errors_total",
		Help: "Online learner snapshots that could not be read or decoded at start-up or reload (the learner then started fresh)."})
	m.bodyRefused = prometheus.NewCounter(prometheus.CounterOpts{Name: "llm4rec_http_body_budget_refused_total",
		Help: "Requests refused (503) because the request bodies in flight filled the body memory budget."})
	m.queueWait = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "llm4rec_batch_queue_wait_seconds",
		Help: "Time a request waited in a graph's batch queue before its batch ran.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}, []string{"graph"})
	m.addedItems = prometheus.NewGauge(prometheus.GaugeOpts{Name: "llm4rec_catalog_added_items",
		Help: "Items added to the served catalog through POST /admin/items (recommendable beside the bundle's own)."})
	m.reg.MustRegister(m.requests, m.latency, m.batchSize, m.runSeconds, m.feedbackAck, m.reloads, m.snapshotErrors, m.bodyRefused, m.queueWait, m.addedItems)
	for _, g := range []string{"text_encoder", "image_encoder", "audio_encoder", "fusion", "generator"} {
		g := g
		m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llm4rec_batch_queue_depth",
			Help: "Requests waiting in a graph's batcher queue.", ConstLabels: prometheus.Labels{"graph": g}},
			func() float64 {
				l := s.engines.acquire()
				if l == nil {
					return 0
				}
				defer l.release()
				return float64(l.eng.QueueDepths()[g])
			}))
	}
	cache := func(hits bool) func() float64 {
		return func() float64 {
			l := s.engines.acquire()
			if l == nil {
				return 0
			}
			defer l.release()
			h, mi := l.eng.Cache().Stats()
			if hits {
				return float64(h)
			}
			return float64(mi)
		}
	}
	m.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "llm4rec_embedding_cache_hits_total", Help: "Query embedding cache hits (text, image, audio)."}, cache(true)),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "llm4rec_embedding_cache_misses_total", Help: "Query embedding cache misses."}, cache(false)),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llm4rec_in_flight_requests", Help: "Recommendations being served."},
			func() float64 { return float64(len(s.slots)) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llm4rec_feedback_log_lag_events",
			Help: "Feedback events applied to live state that the serving engine's online learner has yet to take."},
			func() float64 { return float64(s.learnLag()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "llm4rec_feedback_events_total", Help: "Feedback events made durable."},
			func() float64 { return float64(s.store.Stats().Appended) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "llm4rec_feedback_duplicates_total", Help: "Feedback events ignored as retries of an earlier event_id."},
			func() float64 { return float64(s.store.Stats().Duplicates) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "llm4rec_users", Help: "Users with feedback."},
			func() float64 { return float64(s.live.Users()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "llm4rec_online_updates_total", Help: "Online learner updates applied."},
			func() float64 {
				l := s.engines.acquire()
				if l == nil || l.eng.Learner() == nil {
					if l != nil {
						l.release()
					}
					return 0
				}
				defer l.release()
				return float64(l.eng.Learner().Updates())
			}),
	)
	return m
}

func (m *metrics) observeRequest(route string, status int, d time.Duration) {
	st := strconv.Itoa(status)
	m.requests.WithLabelValues(route, st).Inc()
	m.latency.WithLabelValues(route, st).Observe(d.Seconds())
}

// observeGraph is the engine's hook for every batched or direct graph run.
func (m *metrics) observeGraph(provider string) func(graph string, rows int, d time.Duration, err error) {
	return func(graph string, rows int, d time.Duration, err error) {
		m.batchSize.WithLabelValues(graph).Observe(float64(rows))
		m.runSeconds.WithLabelValues(graph, provider).Observe(d.Seconds())
	}
}

// observeWait is the engine's hook for every request's wait in a batch queue.
func (m *metrics) observeWait(graph string, d time.Duration) {
	m.queueWait.WithLabelValues(graph).Observe(d.Seconds())
}

// render writes the Prometheus text format.
func (m *metrics) render() ([]byte, string, error) {
	mfs, err := m.reg.Gather()
	if err != nil {
		return nil, "", err
	}
	var buf bytes.Buffer
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			return nil, "", err
		}
	}
	return buf.Bytes(), string(format), nil
}
