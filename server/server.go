package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/preprocess"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/server/feedback"
)

// Server is the HTTP API. Lifecycle: New (opens the feedback log, loads and warms the bundle,
// replays the log), Serve, Shutdown.
type Server struct {
	cfg     Config
	log     *slog.Logger
	backend Backend
	store   *feedback.Store
	users   *users
	m       *metrics

	engines  holder
	reloadMu sync.Mutex
	slots    chan struct{} // MaxInFlight semaphore
	ready    atomic.Bool
	stopping atomic.Bool

	learnWake chan struct{} // nudges the learner after new events are durable
	learnWG   sync.WaitGroup
	learnStop chan struct{}
	lastSeq   atomic.Uint64 // newest durable event applied to live state
	learnSeq  atomic.Uint64 // newest event applied by the learner
	snapMu    sync.Mutex

	router []route // built once by New
	http   *fasthttp.Server
}

// New builds a server that serves bundles on rt: NewWithBackend with RuntimeBackend(rt).
func New(cfg Config, rt *ort.Runtime, logger *slog.Logger) (*Server, error) {
	return NewWithBackend(cfg, RuntimeBackend(rt), logger)
}

// NewWithBackend builds a server: opens the feedback log in cfg.DataDir, loads cfg.Bundle
// with backend and rebuilds live state from the log. The server is ready once it returns.
func NewWithBackend(cfg Config, backend Backend, logger *slog.Logger) (*Server, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: logger, backend: backend, users: newUsers(),
		slots: make(chan struct{}, cfg.MaxInFlight), learnWake: make(chan struct{}, 1), learnStop: make(chan struct{})}
	s.m = newMetrics(s)
	s.router = s.routes()
	if cfg.APIKey == "" && cfg.AdminKey == "" {
		logger.Warn("no API keys configured (LLM4REC_API_KEY, LLM4REC_ADMIN_KEY): every endpoint is open")
	}
	store, err := feedback.Open(filepath.Join(cfg.DataDir), feedback.Config{})
	if err != nil {
		return nil, err
	}
	s.store = store
	eng, err := s.loadEngine(cfg.Bundle)
	if err != nil {
		return nil, errors.Join(err, store.Close())
	}
	s.engines.swap(eng)
	s.learnWG.Add(1)
	go s.learner()
	start := time.Now()
	n, err := s.replay(eng)
	if err != nil {
		close(s.learnStop)
		s.learnWG.Wait()
		return nil, errors.Join(err, eng.eng.Close(), store.Close())
	}
	logger.Info("feedback log replayed", "events", n, "users", s.users.count(), "took", time.Since(start))
	s.http = &fasthttp.Server{
		Handler:                       s.handle,
		Name:                          "llm4rec",
		ReadTimeout:                   cfg.ReadTimeout,
		WriteTimeout:                  cfg.WriteTimeout,
		IdleTimeout:                   cfg.IdleTimeout,
		MaxRequestBodySize:            cfg.MaxBodyBytes,
		DisableHeaderNamesNormalizing: false,
		NoDefaultServerHeader:         true,
		Logger:                        fasthttpLogger{logger},
		// errors fasthttp meets before a handler runs (body over the limit, malformed
		// request, read timeout) get the same JSON error body as the rest of the API
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			if errors.Is(err, fasthttp.ErrBodyTooLarge) {
				writeError(ctx, &apiError{status: 413, code: "too_large", msg: fmt.Sprintf("request body exceeds the limit of %d bytes", cfg.MaxBodyBytes)})
				return
			}
			writeError(ctx, &apiError{status: 400, code: "bad_request", msg: err.Error()})
		},
	}
	s.ready.Store(true)
	return s, nil
}

type fasthttpLogger struct{ l *slog.Logger }

func (f fasthttpLogger) Printf(format string, args ...any) { f.l.Warn(fmt.Sprintf(format, args...)) }

// loadEngine opens, validates and warms a bundle with the server's settings.
func (s *Server) loadEngine(dir string) (*loaded, error) {
	cfg := recommend.Config{
		Batch: batch.Config{MaxBatch: s.cfg.BatchMaxSize, MaxWait: time.Duration(s.cfg.BatchMaxWaitMicros) * time.Microsecond,
			QueueSize: s.cfg.BatchQueue},
		MaxHistory: s.cfg.MaxHistory, MaxK: s.cfg.MaxK, DefaultAlpha: s.cfg.IPSAlpha,
		Image:   preprocess.ImageConfig{MaxBytes: s.cfg.MaxImageBytes},
		Audio:   preprocess.AudioConfig{MaxBytes: s.cfg.MaxAudioBytes},
		Online:  online.Config{Rate: s.cfg.OnlineRate, Penalty: s.cfg.OnlinePenalty},
		Observe: s.m.observeGraph(s.backend.Provider()),
		Logger:  s.log,
	}
	if !*s.cfg.OnlineLearning {
		cfg.Online.Rate = -1
	}
	eng, err := s.backend.Open(dir, cfg)
	if err != nil {
		return nil, err
	}
	return &loaded{eng: eng, bundle: dir}, nil
}

// snapshotName keys the learner's snapshot by bundle identity: a new model starts fresh.
func snapshotName(eng Recommender) string {
	m := eng.Manifest()
	return "online/" + m.Name + "/" + m.Version + "/" + m.Files[m.Graphs["generator"].File].SHA256
}

// replay rebuilds users and the engine's live statistics from the log, restores the online
// learner from its latest snapshot and queues the events after it for learning.
func (s *Server) replay(l *loaded) (int, error) {
	var fromSeq uint64
	if lr := l.eng.Learner(); lr != nil {
		if seq, data, ok, err := s.store.GetSnapshot(snapshotName(l.eng)); err != nil {
			return 0, err
		} else if ok {
			if err := lr.UnmarshalBinary(data); err != nil {
				s.log.Warn("online learner snapshot ignored", "err", err)
			} else {
				fromSeq = seq
			}
		}
	}
	s.learnSeq.Store(fromSeq)
	n := 0
	err := s.store.Replay(0, func(seq uint64, e feedback.Event) error {
		before := s.users.add(e)
		s.observe(l, e, before)
		n++
		s.lastSeq.Store(seq)
		return nil
	})
	return n, err
}

// observe applies one event to an engine's live statistics.
func (s *Server) observe(l *loaded, e feedback.Event, before []string) {
	row, ok := l.eng.Row(e.ItemID)
	if !ok {
		return // an item this model does not know: kept in the log and the history only
	}
	earlier := make([]int, 0, len(before))
	for _, id := range before {
		if r, ok := l.eng.Row(id); ok {
			earlier = append(earlier, r)
		}
	}
	l.eng.Stats().Observe(row, e.Timestamp, earlier)
}

// wakeLearner tells the learner that new events are durable.
func (s *Server) wakeLearner() {
	select {
	case s.learnWake <- struct{}{}:
	default:
	}
}

func (s *Server) learnLag() uint64 {
	last, learned := s.lastSeq.Load(), s.learnSeq.Load()
	if !*s.cfg.OnlineLearning || learned >= last {
		return 0
	}
	return last - learned
}

// errStopLearning ends a learner pass early at shutdown.
var errStopLearning = errors.New("server: learner stopping")

// learner follows the feedback log: for every durable event after the last one it learned
// from, it computes the model's log-probabilities for the user's history before the event and
// takes one SGD step towards the chosen item. It runs behind the request path, so learning
// never delays an acknowledgement; the lag is a metric. Start-up restores the last snapshot
// and learns only what came after it.
func (s *Server) learner() {
	defer s.learnWG.Done()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	since := 0
	for {
		select {
		case <-s.learnWake:
		case <-tick.C:
		case <-s.learnStop:
			return
		}
		if !*s.cfg.OnlineLearning || s.learnSeq.Load() >= s.lastSeq.Load() {
			continue
		}
		l := s.engines.acquire()
		if l == nil {
			continue
		}
		lr := l.eng.Learner()
		err := s.store.Replay(s.learnSeq.Load()+1, func(seq uint64, e feedback.Event) error {
			select {
			case <-s.learnStop:
				return errStopLearning
			default:
			}
			if seq > s.lastSeq.Load() {
				return errStopLearning // not yet applied to live state
			}
			if row, ok := l.eng.Row(e.ItemID); ok && lr != nil {
				t0 := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				lp, err := l.eng.LogProbs(ctx, s.historyBefore(e))
				cancel()
				if err == nil {
					lr.Update(lp, row)
				}
				// Learning runs at most half the time: requests and acknowledgements come
				// first, and a backlog only grows the lag metric.
				time.Sleep(time.Since(t0))
			}
			s.learnSeq.Store(seq)
			if since++; since >= s.cfg.SnapshotEvery {
				since = 0
				s.snapshot(l)
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStopLearning) {
			s.log.Warn("online learner", "err", err)
		}
		l.release()
	}
}

// snapshot saves the online learner's state with the sequence it covers.
func (s *Server) snapshot(l *loaded) {
	lr := l.eng.Learner()
	if lr == nil {
		return
	}
	s.snapMu.Lock()
	defer s.snapMu.Unlock()
	data, _ := lr.MarshalBinary()
	if err := s.store.PutSnapshot(snapshotName(l.eng), s.learnSeq.Load(), data); err != nil {
		s.log.Warn("online learner snapshot failed", "err", err)
	}
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.http.Serve(ln)
}

// Shutdown stops the server gracefully: not ready at once, no new connections, in-flight
// requests finish (within cfg.ShutdownTimeout), the learner stops after a last snapshot, the
// engine drains and the feedback log closes (every acknowledged event is already durable).
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
	close(s.learnStop)
	s.learnWG.Wait()
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

// Reload loads the bundle in dir (the current one when empty), validates and warms it,
// rebuilds its live statistics from the log and swaps it in. Requests in flight finish on
// the old engine, which is closed once they are done. On any error the old engine keeps
// serving.
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
	if lr := next.eng.Learner(); lr != nil {
		if _, data, ok, err := s.store.GetSnapshot(snapshotName(next.eng)); err == nil && ok {
			lr.UnmarshalBinary(data)
		}
	}
	err = s.store.Replay(0, func(seq uint64, e feedback.Event) error {
		s.observe(next, e, s.historyBefore(e))
		return nil
	})
	if err != nil {
		next.eng.Close()
		s.m.reloads.WithLabelValues("failed").Inc()
		return nil, err
	}
	prev := s.engines.swap(next)
	s.m.reloads.WithLabelValues("ok").Inc()
	if prev != nil {
		go func() {
			<-prev.drained
			prev.eng.Close()
		}()
	}
	return next.eng, nil
}

// historyBefore is the user's history up to (not including) the event, by time.
func (s *Server) historyBefore(e feedback.Event) []string {
	s.users.mu.RLock()
	defer s.users.mu.RUnlock()
	u := s.users.m[e.UserID]
	if u == nil {
		return nil
	}
	var out []string
	for i, t := range u.times {
		if !t.Before(e.Timestamp) {
			break
		}
		out = append(out, u.items[i])
	}
	return out
}
