package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
	"golang.org/x/sync/semaphore"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/popularity"
	"github.com/llm4rec/llm4rec/engine/preprocess"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/server/feedback"
	"github.com/llm4rec/llm4rec/server/live"
)

// Server is the HTTP API. Lifecycle: New (opens the feedback log, rebuilds live state from
// it, loads and warms the bundle), Serve, Shutdown.
type Server struct {
	cfg     Config
	log     *slog.Logger
	backend Backend
	store   feedback.Log // the bbolt file or the JetStream stream (Config.Feedback)
	live    *live.State  // users' histories and item statistics, shared by every engine loaded
	m       *metrics

	engines  holder
	reloadMu sync.Mutex
	slots    chan struct{}       // MaxInFlight semaphore
	bodies   *semaphore.Weighted // MaxBodyMemory: bytes of request bodies held at once
	ready    atomic.Bool
	stopping atomic.Bool

	followWake chan struct{} // nudges the follower after new events are durable
	followWG   sync.WaitGroup
	followStop chan struct{}
	snapMu     sync.Mutex
	snapErr    atomic.Pointer[string] // why the serving engine's learner snapshot was unusable; nil: it was fine
	cluster    *clusterState          // the learner's lease on a log shared by replicas (cluster.go); nil on bbolt

	router []route // built once by New
	http   *fasthttp.Server
}

// New builds a server that serves bundles on rt: NewWithBackend with RuntimeBackend(rt).
func New(cfg Config, rt *ort.Runtime, logger *slog.Logger) (*Server, error) {
	return NewWithBackend(cfg, RuntimeBackend(rt), logger)
}

// NewWithBackend builds a server: opens the feedback log in cfg.DataDir, rebuilds live state
// from it, loads cfg.Bundle with backend bound to that state and starts the follower. The
// server is ready once it returns.
func NewWithBackend(cfg Config, backend Backend, logger *slog.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: logger, backend: backend, live: live.New(popularity.Config{}),
		bodies: semaphore.NewWeighted(cfg.MaxBodyMemory),
		slots:  make(chan struct{}, cfg.MaxInFlight), followWake: make(chan struct{}, 1), followStop: make(chan struct{})}
	s.m = newMetrics(s)
	s.router = s.routes()
	if cfg.APIKey == "" && cfg.AdminKey == "" {
		logger.Warn("no API keys configured (LLM4REC_API_KEY, LLM4REC_ADMIN_KEY): every endpoint is open")
	}
	store, err := openFeedbackLog(cfg, logger)
	if err != nil {
		return nil, err
	}
	s.store = store
	start := time.Now()
	n, err := s.live.CatchUp(store)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("server: replay the feedback log: %w", err), store.Close())
	}
	logger.Info("feedback log replayed", "events", n, "users", s.live.Users(), "took", time.Since(start))
	eng, err := s.loadEngine(cfg.Bundle)
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	s.engines.swap(eng)
	s.followWG.Add(1)
	go s.follow()
	s.startCluster()
	s.http = &fasthttp.Server{
		Handler:            s.handle,
		Name:               "llm4rec",
		ReadTimeout:        cfg.ReadTimeout,
		WriteTimeout:       cfg.WriteTimeout,
		IdleTimeout:        cfg.IdleTimeout,
		MaxRequestBodySize: cfg.MaxBodyBytes,
		// bodies are read by the handler after authorization, within the body memory budget
		// (readBody); fasthttp would otherwise allocate a body's declared length before any
		// handler runs
		StreamRequestBody:             true,
		HeaderReceived:                refuseDeclaredTooLarge(cfg.MaxBodyBytes),
		Concurrency:                   cfg.MaxConns,
		MaxConnsPerIP:                 cfg.MaxConnsPerIP,
		ReadBufferSize:                readBufferSize,
		DisableHeaderNamesNormalizing: false,
		NoDefaultServerHeader:         true,
		Logger:                        fasthttpLogger{logger},
		// errors fasthttp meets before a handler runs (body over the limit, malformed
		// request, read timeout) get the same JSON error body as the rest of the API, and never
		// fasthttp's message, which can quote the request's head (its Authorization header too)
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) { writeError(ctx, readError(err, cfg)) },
	}
	s.ready.Store(true)
	return s, nil
}

// bodyRefusedHeader marks, inside the server only, a request whose declared Content-Length
// exceeded MaxBodyBytes (refuseDeclaredTooLarge); a client's own copy is removed first.
const bodyRefusedHeader = "X-Llm4rec-Declared-Too-Large"

// refuseDeclaredTooLarge runs on every request head: a body declared larger than max is never
// read (fasthttp would read its first kilobytes before any handler when streaming bodies, so a
// client sending only the head would wait for the read timeout); the request reaches the
// handler with no body, marked, is answered 413 and its connection closed.
func refuseDeclaredTooLarge(max int) func(*fasthttp.RequestHeader) fasthttp.RequestConfig {
	return func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		h.Del(bodyRefusedHeader)
		if n := h.ContentLength(); n > max {
			h.Set(bodyRefusedHeader, strconv.Itoa(n))
			h.SetContentLength(0)
			h.SetConnectionClose()
		}
		return fasthttp.RequestConfig{}
	}
}

// readError is the answer to an error met while reading a request, before any handler.
func readError(err error, cfg Config) *apiError {
	var small *fasthttp.ErrSmallBuffer
	var ne net.Error
	switch {
	case errors.Is(err, fasthttp.ErrBodyTooLarge):
		return &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("request body exceeds the limit of %d bytes", cfg.MaxBodyBytes)}
	case errors.As(err, &small) || errors.Is(err, fasthttp.ErrSmallReadBuffer):
		return &apiError{status: 431, code: "headers_too_large", msg: fmt.Sprintf("request line and headers exceed %d bytes", readBufferSize)}
	case errors.As(err, &ne) && ne.Timeout(), errors.Is(err, os.ErrDeadlineExceeded):
		return &apiError{status: 408, code: "timeout", msg: fmt.Sprintf("the request was not received within %s", cfg.ReadTimeout)}
	}
	return &apiError{status: 400, code: "bad_request", msg: "malformed HTTP request"}
}

// readBufferSize bounds a request's line and headers (fasthttp's default).
const readBufferSize = 4096

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Warn(fmt.Sprintf(format, args...)) }

// loadEngine opens, validates and warms a bundle with the server's settings, bound to the
// server's live item statistics, and restores its online learner from its snapshot. Start-up
// and reload both load this way.
func (s *Server) loadEngine(dir string) (*loaded, error) {
	cfg := recommend.Config{
		Batch: batch.Config{MaxBatch: s.cfg.BatchMaxSize, MaxWait: time.Duration(s.cfg.BatchMaxWaitMicros) * time.Microsecond,
			QueueSize: s.cfg.BatchQueue},
		TextReplicas: s.cfg.TextReplicas,
		MaxHistory:   s.cfg.MaxHistory, MaxK: s.cfg.MaxK, DefaultAlpha: s.cfg.IPSAlpha, MaxDecodeMemory: s.cfg.MaxDecodeMemory,
		Image:           preprocess.ImageConfig{MaxBytes: s.cfg.MaxImageBytes},
		Audio:           preprocess.AudioConfig{MaxBytes: s.cfg.MaxAudioBytes},
		Live:            s.live.Items(),
		ExplainEvidence: s.cfg.ExplainEvidence,
		Index:           s.cfg.IndexKind(),
		Online:          online.Config{Rate: s.cfg.OnlineRate, Penalty: s.cfg.OnlinePenalty},
		Observe:         s.m.observeGraph(s.backend.Provider()),
		ObserveWait:     s.m.observeWait,
		Logger:          s.log,
	}
	if !*s.cfg.OnlineLearning {
		cfg.Online.Rate = -1
	}
	eng, err := s.backend.Open(dir, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.restoreAddedItems(eng); err != nil {
		return nil, errors.Join(err, eng.Close())
	}
	l := &loaded{eng: eng, bundle: dir}
	s.restoreLearner(l)
	return l, nil
}

// snapshotName keys the learner's snapshot by bundle identity: a new model starts fresh.
func snapshotName(eng Recommender) string {
	m := eng.Manifest()
	return "online/" + m.Name + "/" + m.Version + "/" + m.Files[m.Graphs["generator"].File].SHA256
}

// restoreLearner loads l's learner from its snapshot and sets l.learned to the sequence the
// snapshot covers; the follower learns what came after. A snapshot that cannot be read or
// decoded is reported (an error in the log, llm4rec_online_snapshot_errors_total, the
// readiness answer) and the learner starts fresh, relearning the whole log: it never runs on
// biases from one snapshot and a sequence from another.
func (s *Server) restoreLearner(l *loaded) {
	lr := l.eng.Learner()
	if lr == nil {
		s.snapErr.Store(nil)
		return
	}
	name := snapshotName(l.eng)
	seq, data, ok, err := s.store.GetSnapshot(name)
	if err == nil && ok && seq > s.store.LastSeq() {
		err = fmt.Errorf("snapshot at seq %d is past the log's last seq %d", seq, s.store.LastSeq())
	}
	if err == nil && ok {
		err = lr.UnmarshalBinary(data) // checks before it changes anything: on an error the biases stay 0
	}
	if err != nil {
		s.log.Error("online learner snapshot unusable: the learner starts fresh and relearns the feedback log", "snapshot", name, "err", err)
		s.m.snapshotErrors.Inc()
		msg := fmt.Sprintf("snapshot %s unusable, learner started fresh: %v", name, err)
		s.snapErr.Store(&msg)
		return
	}
	s.snapErr.Store(nil)
	if ok {
		l.learned.Store(seq)
	}
}

// wakeFollower tells the follower that new events are durable.
func (s *Server) wakeFollower() {
	select {
	case s.followWake <- struct{}{}:
	default:
	}
}

// learnLag is how many events applied to live state the serving engine's learner has yet to
// take.
func (s *Server) learnLag() uint64 {
	if !*s.cfg.OnlineLearning {
		return 0
	}
	l := s.engines.acquire()
	if l == nil {
		return 0
	}
	defer l.release()
	applied, learned := s.live.Applied(), l.learned.Load()
	if learned >= applied {
		return 0
	}
	return applied - learned
}

// errStopLearning ends a learner pass early: at shutdown, or when its engine was swapped out.
var errStopLearning = errors.New("server: learner stopping")

// follow is the loop that follows the feedback log, behind the request path: on every nudge
// and every second it catches live state up with the log (the same CatchUp that start-up,
// feedback and reload use, so an event whose request could not apply it is applied here), then
// lets the serving engine's learner learn the events it has not yet. Learning never delays an
// acknowledgement; the lag is a metric.
func (s *Server) follow() {
	defer s.followWG.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	since := 0
	for {
		select {
		case <-s.followWake:
		case <-tick.C:
		case <-s.followStop:
			return
		}
		if _, err := s.live.CatchUp(s.store); err != nil && !errors.Is(err, feedback.ErrClosed) {
			s.log.Warn("live state: catching up with the feedback log", "err", err)
		}
		if !*s.cfg.OnlineLearning {
			continue
		}
		if l := s.engines.acquire(); l != nil {
			if s.learnerTurn(l) { // on a shared log, only the lease holder learns
				s.learn(l, &since)
			}
			l.release()
		}
	}
}

// learn takes, for every event applied to live state after the last one l's learner took, the
// model's log-probabilities for the user's history before the event and one SGD step towards
// the chosen item. It stops early at shutdown and when l is swapped out: the next engine's
// learner goes on from its own snapshot. Every SnapshotEvery events it saves a snapshot.
func (s *Server) learn(l *loaded, since *int) {
	lr := l.eng.Learner()
	if lr == nil || l.learned.Load() >= s.live.Applied() {
		return
	}
	err := s.store.Replay(l.learned.Load()+1, func(seq uint64, e feedback.Event) error {
		select {
		case <-s.followStop:
			return errStopLearning
		default:
		}
		if seq > s.live.Applied() || l.retired() || !s.learnerLeads() {
			return errStopLearning
		}
		// items added to the live catalog have no learned correction (recommend/added.go)
		if row, ok := l.eng.Row(e.ItemID); ok && row < len(l.eng.Items()) {
			t0 := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			state, lp, err := l.eng.LearnerInputs(ctx, s.live.HistoryBefore(e.UserID, e.Timestamp, s.cfg.MaxHistory))
			cancel()
			if err == nil {
				lr.Update(state, lp, row)
			}
			// Learning runs at most half the time: requests and acknowledgements come
			// first, and a backlog only grows the lag metric.
			time.Sleep(time.Since(t0))
		}
		l.learned.Store(seq)
		if *since++; *since >= s.cfg.SnapshotEvery {
			*since = 0
			s.snapshot(l)
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStopLearning) && !errors.Is(err, feedback.ErrClosed) {
		s.log.Warn("online learner", "err", err)
	}
}

// snapshot saves the online learner's state with the sequence it covers (on a shared log,
// only the replica that learns: the others hold copies of its snapshots).
func (s *Server) snapshot(l *loaded) {
	lr := l.eng.Learner()
	if lr == nil || !s.learnerLeads() {
		return
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	seq := l.learned.Load()
	data, _ := lr.MarshalBinary()
	if err := s.store.PutSnapshot(snapshotName(l.eng), seq, data); err != nil {
		s.log.Warn("online learner snapshot failed", "err", err)
	}
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(ln)
}

// Shutdown stops the server gracefully: not ready at once, no new connections, in-flight
// requests finish (within cfg.ShutdownTimeout), the follower stops, the learner's last
// snapshot is saved, the engine drains and the feedback log closes (every acknowledged event
// is already durable).
func (s *Server) Shutdown() error {
	s.ready.Store(false)
	s.stopping.Store(true)
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.ShutdownTimeout)
	defer cancel()
	var errs []error
	if s.http != nil {
		if err := s.http.ShutdownWithContext(ctx); err != nil {
			errs = append(errs, fmt.Errorf("server: drain: %w", err))
		}
	}
	close(s.followStop)
	s.followWG.Wait()
	if l := s.engines.swap(nil); l != nil {
		s.snapshot(l)
		select {
		case <-l.drained:
		case <-ctx.Done():
			errs = append(errs, errors.New("server: drain: requests still running at the shutdown timeout"))
		}
		errs = append(errs, l.eng.Close())
	}
	errs = append(errs, s.store.Close())
	return errors.Join(errs...)
}

// Reload loads the bundle in dir (the current one when empty) the way start-up does: bound to
// the server's live state (histories and item statistics by id, so nothing is rebuilt) and
// with its learner restored from its own snapshot. It swaps it in, then catches live state up
// with the log so that whatever became durable during the load is there before Reload
// returns. Requests in flight finish on the old engine, which is closed once they are done.
// On any error the old engine keeps serving.
func (s *Server) Reload(dir string) (Recommender, error) {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	if dir == "" {
		cur := s.engines.acquire()
		if cur == nil {
			return nil, errors.New("server: no engine loaded")
		}
		dir = cur.bundle
		cur.release()
	}
	next, err := s.loadEngine(dir)
	if err != nil {
		s.m.reloads.WithLabelValues("failed").Inc()
		return nil, err
	}
	prev := s.engines.swap(next)
	s.m.reloads.WithLabelValues("ok").Inc()
	if _, err := s.live.CatchUp(s.store); err != nil {
		s.log.Warn("live state: catching up with the feedback log after a reload", "err", err)
	}
	s.wakeFollower()
	if prev != nil {
		go func() {
			<-prev.drained
			prev.eng.Close()
		}()
	}
	return next.eng, nil
}
