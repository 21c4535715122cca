package feedback

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Defaults of JetStreamConfig.
const (
	DefaultStream      = "LLM4REC_FEEDBACK"
	DefaultReplicas    = 1
	DefaultDuplicates  = 2 * time.Minute
	DefaultAckTimeout  = 5 * time.Second
	DefaultOpenTimeout = 30 * time.Second
)

// JetStreamConfig configures a JetStream log. The zero value of each field is its default.
type JetStreamConfig struct {
	// URL lists the NATS servers, comma-separated: nats://HOST:4222, or tls://HOST:4222 for
	// TLS with the system's roots (or TLSCA). Required. The client reconnects to any of
	// them, and to servers the cluster announces, for as long as the log is open.
	URL string
	// Stream is the JetStream stream's name (default DefaultStream): letters, digits, '-'
	// and '_'. Events are published on the subject STREAM.events; learner snapshots live in
	// the key-value bucket STREAM_snapshots.
	Stream string
	// Replicas is the stream's replica count (default 1; 3 on a 3-node cluster). A stream
	// that already exists with another count is an error, not silently used: an Append is
	// acknowledged only once a majority of this many servers stored it.
	Replicas int
	// Duplicates is the stream's deduplication window (default 2 minutes): a publish whose
	// Nats-Msg-Id (the event_id) was seen within it is refused by the server. Past it the
	// log's own index of every event id catches the retry (see Append).
	Duplicates time.Duration
	// CredsFile is a NATS credentials file (JWT and NKey seed), as nats.UserCredentials takes.
	CredsFile string
	// TLSCA is a PEM file of the roots that verify the servers; TLSCert and TLSKey are the
	// client's certificate and key for servers that require one.
	TLSCA, TLSCert, TLSKey string
	// Name is the client's connection name, shown by the NATS server (default "llm4rec").
	Name string
	// AckTimeout bounds the wait for a publish acknowledgement when the caller's context has
	// no earlier deadline (default 5s): past it the Append fails with ErrNotAcknowledged.
	AckTimeout time.Duration
	// OpenTimeout bounds connecting and creating the stream, and then catching up with the
	// stream without progress (default 30s): a long stream may take longer than this in
	// all, as long as events keep arriving.
	OpenTimeout time.Duration
	// LeaseTTL is how long a lease (see Lease) outlives its holder's last renewal (default
	// DefaultLeaseTTL).
	LeaseTTL time.Duration
	// Types, MaxFutureSkew and MaxEventsPerAppend are as in Config.
	Types              []string
	MaxFutureSkew      time.Duration
	MaxEventsPerAppend int
	// Logger receives connection changes and skipped messages (default slog.Default()).
	Logger *slog.Logger
}

var streamName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,200}$`)

func (c JetStreamConfig) withDefaults() JetStreamConfig {
	if c.Stream == "" {
		c.Stream = DefaultStream
	}
	if c.Replicas == 0 {
		c.Replicas = DefaultReplicas
	}
	if c.Duplicates == 0 {
		c.Duplicates = DefaultDuplicates
	}
	if c.Name == "" {
		c.Name = "llm4rec"
	}
	if c.AckTimeout <= 0 {
		c.AckTimeout = DefaultAckTimeout
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = DefaultOpenTimeout
	}
	if c.MaxEventsPerAppend <= 0 {
		c.MaxEventsPerAppend = DefaultMaxEventsPerAppend
	}
	if c.LeaseTTL <= 0 {
		c.LeaseTTL = DefaultLeaseTTL
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports settings that cannot work.
func (c JetStreamConfig) Validate() error {
	c = c.withDefaults()
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("no NATS URL"))
	}
	if !streamName.MatchString(c.Stream) {
		errs = append(errs, fmt.Errorf("stream name %q: want 1 to 200 letters, digits, '-' or '_'", c.Stream))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, fmt.Errorf("replicas %d: JetStream allows 1 to 5", c.Replicas))
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		errs = append(errs, errors.New("a TLS client certificate needs both its certificate and key files"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("feedback: jetstream config: %w", errors.Join(errs...))
	}
	return nil
}

// JetStream is a feedback Log kept in a NATS JetStream stream that every replica of a cluster
// shares. Sequence numbers are the stream's, so every replica numbers and orders the events
// alike. Each JetStream holds one ordered consumer of the whole stream and keeps what it
// delivered in memory, in order (about 100 bytes an event, as the live state keeps every
// history anyway): Replay reads from there, so a replica applies the stream through the same
// path, in the same order, as any other. An event id met a second time in the stream (a retry
// that came after the server's dedup window, two replicas racing past it) is skipped by every
// replica alike: the first occurrence wins. A consumer that stops delivering while the stream
// holds more is replaced (watchConsumer).
//
// Its methods are safe for concurrent use.
type JetStream struct {
	cfg     JetStreamConfig
	rules   rules
	subject string
	nc      *nats.Conn
	js      jetstream.JetStream
	stream  jetstream.Stream

	ccMu      sync.Mutex
	cc        jetstream.ConsumeContext // the consumer running (watchConsumer may replace it)
	delivered atomic.Int64             // when the consumer last delivered, Unix ns
	published atomic.Uint64            // the highest sequence this log's publishes were acknowledged at
	kv        jetstream.KeyValue       // learner snapshots (bucket STREAM_snapshots)
	log       *slog.Logger

	mu       sync.RWMutex
	entries  []jsEntry      // kept events in stream order
	ids      map[string]int // event id -> index in entries
	notify   chan struct{}  // closed and replaced whenever lastSeq moves
	caughtUp bool           // the consumer delivered a message with nothing pending after it
	lastSeq  atomic.Uint64  // highest stream sequence delivered (kept or skipped)

	updates chan struct{} // a token whenever events were delivered (Updates)

	leaseMu  sync.Mutex
	leases   jetstream.KeyValue // bucket STREAM_leases, made by the first Lease
	held     []*Lease           // released by Close
	announce jetstream.KeyValue // bucket STREAM_announce, made by the first Announce or Watch

	closed atomic.Bool
	done   chan struct{}

	appended, duplicates, conflicts, commits, skipped atomic.Uint64
}

type jsEntry struct {
	seq uint64
	e   Event
}

// OpenJetStream connects to cfg.URL, creates the stream (and the snapshot store) unless they
// exist, starts the ordered consumer from the stream's first event and returns once it has
// delivered everything the stream held at the call. Close releases it.
func OpenJetStream(cfg JetStreamConfig) (*JetStream, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	j := &JetStream{cfg: cfg, rules: newRules(cfg.Types, cfg.MaxFutureSkew), subject: cfg.Stream + ".events",
		log: cfg.Logger, ids: map[string]int{}, notify: make(chan struct{}), updates: make(chan struct{}, 1),
		done: make(chan struct{})}
	opts := []nats.Option{nats.Name(cfg.Name), nats.MaxReconnects(-1), nats.ReconnectWait(250 * time.Millisecond),
		nats.Timeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if !j.closed.Load() {
				j.log.Warn("feedback: disconnected from NATS; reconnecting", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { j.log.Info("feedback: reconnected to NATS", "server", nc.ConnectedUrl()) }),
	}
	if cfg.CredsFile != "" {
		opts = append(opts, nats.UserCredentials(cfg.CredsFile))
	}
	if cfg.TLSCA != "" {
		opts = append(opts, nats.RootCAs(cfg.TLSCA))
	}
	if cfg.TLSCert != "" {
		opts = append(opts, nats.ClientCert(cfg.TLSCert, cfg.TLSKey))
	}
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("feedback: connect to NATS %s: %w", cfg.URL, err)
	}
	j.nc = nc
	if err := j.open(); err != nil {
		j.closed.Store(true)
		close(j.done)
		j.ccMu.Lock()
		if j.cc != nil {
			j.cc.Stop()
		}
		j.ccMu.Unlock()
		nc.Close()
		return nil, fmt.Errorf("feedback: open stream %s: %w", cfg.Stream, err)
	}
	return j, nil
}

func (j *JetStream) open() error {
	var err error
	j.js, err = jetstream.New(j.nc, jetstream.WithPublishAsyncTimeout(j.cfg.AckTimeout), jetstream.WithPublishAsyncMaxPending(4096))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.OpenTimeout)
	defer cancel()
	var stream jetstream.Stream
	// a cluster just started may not have elected its meta leader yet: retry within the timeout
	for {
		// each try bounded on its own: a request to a cluster still forming can go unanswered
		actx, acancel := context.WithTimeout(ctx, 2*time.Second)
		stream, err = j.ensureStream(actx)
		acancel()
		if err == nil || errors.Is(err, errStreamMismatch) {
			break
		}
		j.log.Debug("feedback: stream not ready yet", "stream", j.cfg.Stream, "err", err)
		select {
		case <-ctx.Done():
			return err // the last answer, not the deadline: it says what is wrong
		case <-time.After(250 * time.Millisecond):
		}
	}
	if err != nil {
		return err
	}
	// a key-value bucket rather than an object store: a value is one message, so a reader
	// never meets a snapshot half replaced (an object store's reader can wait out its whole
	// timeout for chunks a concurrent put removed)
	j.kv, err = j.js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: j.cfg.Stream + "_snapshots",
		Description: "llm4rec learner snapshots", Replicas: j.cfg.Replicas, Storage: jetstream.FileStorage, History: 1})
	if err != nil {
		return fmt.Errorf("snapshot store: %w", err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	j.stream = stream
	if err := j.consume(ctx); err != nil {
		return err
	}
	go j.watchConsumer()
	if info.State.Msgs == 0 {
		return nil
	}
	return j.catchUp(info.State.LastSeq)
}

// consume starts an ordered consumer of the stream from the event after the last delivered,
// replacing the one running.
func (j *JetStream) consume(ctx context.Context) error {
	cons, err := j.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{FilterSubjects: []string{j.subject},
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: j.lastSeq.Load() + 1})
	if err != nil {
		return fmt.Errorf("consumer: %w", err)
	}
	// short pulls with a heartbeat every second: a consumer lost with its NATS node is noticed
	// within seconds (JetStream's default waits out 30s pulls)
	cc, err := cons.Consume(j.receive, jetstream.PullExpiry(5*time.Second), jetstream.PullHeartbeat(time.Second),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			if !j.closed.Load() {
				j.log.Warn("feedback: stream consumer", "stream", j.cfg.Stream, "err", err)
			}
		}))
	if err != nil {
		return fmt.Errorf("consume: %w", err)
	}
	j.ccMu.Lock()
	defer j.ccMu.Unlock()
	if j.cc != nil {
		j.cc.Stop()
	}
	j.cc = cc
	if j.closed.Load() { // closed meanwhile: Close stopped the one before
		cc.Stop()
	}
	return nil
}

// storeMax raises v to at least x.
func storeMax(v *atomic.Uint64, x uint64) {
	for {
		cur := v.Load()
		if x <= cur || v.CompareAndSwap(cur, x) {
			return
		}
	}
}

// Consumer watchdog timing: a consumer that delivered nothing for stallAfter while the stream
// holds events it has not delivered is replaced; the stream is asked about that every
// idleCheck when nothing says so already (an acknowledgement of this log's own publish does).
const (
	stallAfter = 3 * time.Second
	idleCheck  = 5 * time.Second
)

// watchConsumer replaces a stalled consumer. The client's ordered consumer recreates itself
// after its NATS server is lost, but with a backoff (1, 2, 4, 8, 10 s, each try up to 10 s)
// that can leave a replica seconds behind the stream, and every Append waiting for its own
// events, long after the cluster elected a new leader.
func (j *JetStream) watchConsumer() {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastCheck time.Time
	for {
		select {
		case <-j.done:
			return
		case <-tick.C:
		}
		if time.Since(time.Unix(0, j.delivered.Load())) < stallAfter {
			continue
		}
		behind := j.published.Load() > j.lastSeq.Load()
		if !behind {
			if time.Since(lastCheck) < idleCheck {
				continue
			}
			lastCheck = time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			info, err := j.stream.Info(ctx)
			cancel()
			behind = err == nil && info.State.LastSeq > j.lastSeq.Load()
		}
		if !behind {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := j.consume(ctx)
		cancel()
		if err != nil {
			j.log.Warn("feedback: replacing a stalled stream consumer (will retry)", "stream", j.cfg.Stream, "at_seq", j.lastSeq.Load(), "err", err)
			continue
		}
		j.delivered.Store(time.Now().UnixNano()) // give the new one time to deliver
		j.log.Info("feedback: replaced a stalled stream consumer", "stream", j.cfg.Stream, "from_seq", j.lastSeq.Load()+1)
	}
}

var errStreamMismatch = errors.New("existing stream differs")

// ensureStream creates the stream, or checks the one that exists.
func (j *JetStream) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	want := jetstream.StreamConfig{Name: j.cfg.Stream, Description: "llm4rec feedback events", Subjects: []string{j.subject},
		Storage: jetstream.FileStorage, Replicas: j.cfg.Replicas, Duplicates: j.cfg.Duplicates,
		Retention: jetstream.LimitsPolicy, MaxMsgSize: 64 << 10}
	s, err := j.js.Stream(ctx, j.cfg.Stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		// another replica may create it first: the caller retries and then finds it
		return j.js.CreateStream(ctx, want)
	}
	if err != nil {
		return nil, err
	}
	got := s.CachedInfo().Config
	if got.Replicas != j.cfg.Replicas {
		return nil, fmt.Errorf("%w: stream %s has %d replicas, configured %d", errStreamMismatch, j.cfg.Stream, got.Replicas, j.cfg.Replicas)
	}
	found := false
	for _, sub := range got.Subjects {
		found = found || sub == j.subject
	}
	if !found {
		return nil, fmt.Errorf("%w: stream %s does not take subject %s (it has %v)", errStreamMismatch, j.cfg.Stream, j.subject, got.Subjects)
	}
	return s, nil
}

// catchUp waits until the consumer has delivered up to seq, or everything pending; it fails
// when nothing arrives for OpenTimeout.
func (j *JetStream) catchUp(seq uint64) error {
	for {
		j.mu.RLock()
		ch, have, done := j.notify, j.lastSeq.Load(), j.caughtUp
		j.mu.RUnlock()
		if have >= seq || done {
			return nil
		}
		select {
		case <-ch:
		case <-time.After(j.cfg.OpenTimeout):
			return fmt.Errorf("catching up: no event delivered for %s (at seq %d of %d)", j.cfg.OpenTimeout, have, seq)
		}
	}
}

// receive takes one message from the ordered consumer, in stream order.
func (j *JetStream) receive(m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		j.log.Error("feedback: stream message without metadata", "err", err)
		return
	}
	seq := md.Sequence.Stream
	j.delivered.Store(time.Now().UnixNano())
	e, derr := decodeEvent(m.Data())
	j.mu.Lock()
	if seq <= j.lastSeq.Load() {
		// delivered again: after the consumer was reset, or by the one it replaced
		j.mu.Unlock()
		return
	}
	switch i, seen := j.ids[e.EventID]; {
	case derr != nil:
		j.skipped.Add(1)
		j.log.Error("feedback: skipping a stream message that is not an event", "stream", j.cfg.Stream, "seq", seq, "err", derr)
	case seen:
		// every replica meets the same messages in the same order, so each skips this one
		j.skipped.Add(1)
		if !bytes.Equal(appendEncoded(nil, &j.entries[i].e), m.Data()) {
			j.log.Warn("feedback: skipping a stream message whose event_id was stored earlier with other content",
				"event_id", e.EventID, "seq", seq, "first_seq", j.entries[i].seq)
		}
	default:
		j.ids[e.EventID] = len(j.entries)
		j.entries = append(j.entries, jsEntry{seq: seq, e: e})
	}
	j.lastSeq.Store(seq)
	if md.NumPending == 0 {
		j.caughtUp = true
	}
	ch := j.notify
	j.notify = make(chan struct{})
	j.mu.Unlock()
	close(ch)
	select {
	case j.updates <- struct{}{}:
	default:
	}
}

// Updates yields a value after the consumer delivered events, whoever published them (at
// most one is pending: a reader that was busy finds one token for many events). A replica
// applies what other replicas appended on it.
func (j *JetStream) Updates() <-chan struct{} { return j.updates }

// waitFor returns once the consumer has delivered seq.
func (j *JetStream) waitFor(ctx context.Context, seq uint64) error {
	for {
		j.mu.RLock()
		ch, have := j.notify, j.lastSeq.Load()
		j.mu.RUnlock()
		if have >= seq {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		case <-j.done:
			return ErrClosed
		}
	}
}

// Validate checks an event against the log's rules (Types, MaxFutureSkew).
func (j *JetStream) Validate(e Event) error { return j.rules.check(&e, time.Now()) }

// Append publishes the events to the stream, each with its event_id as Nats-Msg-Id, and
// returns once JetStream acknowledged every one (stored by a majority of the stream's
// replicas) and this log's consumer delivered them, so that Replay includes them.
//
// Deduplication is checked twice. Before publishing, against every event id the consumer has
// delivered: a known id with the same content is a duplicate and is not published again; with
// other content the whole call fails with ErrConflict and nothing is published. After the
// acknowledgements, against the stream: an id the server deduplicated in its window, or one
// that another replica published first, is a duplicate (same content) or a conflict.
//
// Unlike Store's, a call is not atomic: when a publish is not acknowledged (ErrNotAcknowledged:
// a server unreachable, a leader being elected, ctx done) the call fails, though some of its
// events may be stored; sending the same events again is safe, and those come back as
// duplicates. An event acknowledged but not yet delivered here when ctx ends still counts as
// accepted: it is durable and Replay will have it shortly.
func (j *JetStream) Append(ctx context.Context, events ...Event) (Result, error) {
	if len(events) == 0 {
		return Result{}, nil
	}
	if err := j.rules.checkAppend(events, j.cfg.MaxEventsPerAppend, time.Now()); err != nil {
		return Result{}, err
	}
	if err := ctx.Err(); err != nil {
		return Result{}, err
	}
	if j.closed.Load() {
		return Result{}, ErrClosed
	}
	recs := make([][]byte, len(events))
	for i := range events {
		recs[i] = appendEncoded(nil, &events[i])
	}
	res := Result{New: make([]bool, len(events)), Seqs: make([]uint64, len(events))}
	first := make(map[string]int, len(events)) // event id -> index of its first event in this call
	var publish []int                          // indexes of events to publish
	var conflict error
	j.mu.RLock()
	for i := range events {
		id := events[i].EventID
		if k, ok := j.ids[id]; ok {
			if !bytes.Equal(appendEncoded(nil, &j.entries[k].e), recs[i]) {
				conflict = fmt.Errorf("%w: event %d: event_id %q", ErrConflict, i, id)
				break
			}
			res.Seqs[i] = j.entries[k].seq
			continue
		}
		if p, ok := first[id]; ok {
			if !bytes.Equal(recs[p], recs[i]) {
				conflict = fmt.Errorf("%w: event %d: event_id %q", ErrConflict, i, id)
				break
			}
			continue
		}
		first[id] = i
		publish = append(publish, i)
	}
	j.mu.RUnlock()
	if conflict != nil {
		j.conflicts.Add(1)
		return Result{}, conflict
	}

	acks, err := j.publish(ctx, events, recs, publish)
	if err != nil {
		return Result{}, err
	}
	if len(publish) > 0 {
		j.commits.Add(1)
	}
	var maxSeq uint64
	for _, a := range acks {
		maxSeq = max(maxSeq, a.Sequence)
	}
	storeMax(&j.published, maxSeq)
	wctx, cancel := context.WithTimeout(ctx, j.cfg.AckTimeout)
	werr := j.waitFor(wctx, maxSeq)
	cancel()

	j.mu.RLock()
	for k, i := range publish {
		a := acks[k]
		res.Seqs[i] = a.Sequence
		if werr != nil {
			res.New[i] = !a.Duplicate // durable; the consumer will say the rest
			continue
		}
		idx, ok := j.ids[events[i].EventID]
		switch {
		case !ok:
			res.New[i] = !a.Duplicate // not an event the consumer could keep: cannot happen for ours
		case j.entries[idx].seq == a.Sequence && !a.Duplicate:
			res.New[i] = true
		case bytes.Equal(appendEncoded(nil, &j.entries[idx].e), recs[i]):
			res.Seqs[i] = j.entries[idx].seq
		default:
			conflict = fmt.Errorf("%w: event %d: event_id %q", ErrConflict, i, events[i].EventID)
		}
	}
	j.mu.RUnlock()
	if conflict != nil {
		j.conflicts.Add(1)
		return Result{}, conflict
	}
	for i := range events {
		if p, ok := first[events[i].EventID]; ok && p != i {
			res.Seqs[i] = res.Seqs[p] // a repeat within the call
		}
		if res.New[i] {
			res.Accepted++
		} else {
			res.Duplicates++
		}
	}
	j.appended.Add(uint64(res.Accepted))
	j.duplicates.Add(uint64(res.Duplicates))
	return res, nil
}

// publish sends events[i] for each i in idx and waits for every acknowledgement.
func (j *JetStream) publish(ctx context.Context, events []Event, recs [][]byte, idx []int) ([]*jetstream.PubAck, error) {
	futures := make([]jetstream.PubAckFuture, len(idx))
	for k, i := range idx {
		m := &nats.Msg{Subject: j.subject, Data: recs[i], Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, events[i].EventID)
		f, err := j.js.PublishMsgAsync(m, jetstream.WithExpectStream(j.cfg.Stream))
		if err != nil {
			return nil, fmt.Errorf("%w: publish event %d: %w", ErrNotAcknowledged, i, err)
		}
		futures[k] = f
	}
	acks := make([]*jetstream.PubAck, len(idx))
	for k, f := range futures {
		select {
		case a := <-f.Ok():
			acks[k] = a
		case err := <-f.Err():
			return nil, fmt.Errorf("%w: event %d: %w", ErrNotAcknowledged, idx[k], err)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: event %d: %w", ErrNotAcknowledged, idx[k], ctx.Err())
		case <-j.done:
			return nil, ErrClosed
		}
	}
	return acks, nil
}

// Replay calls fn for each event with sequence number fromSeq or above, in stream order, up
// to the LastSeq at the call. fn runs without any lock held and may call the log. An error
// from fn stops the replay and is returned wrapped.
func (j *JetStream) Replay(fromSeq uint64, fn func(seq uint64, e Event) error) error {
	if j.closed.Load() {
		return ErrClosed
	}
	end := j.LastSeq()
	next := max(fromSeq, 1)
	var batch []jsEntry
	for next <= end {
		j.mu.RLock()
		i := sort.Search(len(j.entries), func(k int) bool { return j.entries[k].seq >= next })
		k := i + sort.Search(len(j.entries)-i, func(k int) bool { return j.entries[i+k].seq > end })
		// a copy sized to what is there: most calls (one after each request) find an event
		// or two, and a chunk-sized buffer each time would cost more than the events
		batch = append(batch[:0], j.entries[i:min(k, i+replayChunk)]...)
		j.mu.RUnlock()
		if len(batch) == 0 {
			return nil
		}
		for _, it := range batch {
			if err := fn(it.seq, it.e); err != nil {
				return fmt.Errorf("replay stopped at seq %d: %w", it.seq, err)
			}
		}
		next = batch[len(batch)-1].seq + 1
	}
	return nil
}

// LastSeq is the highest stream sequence number the consumer has delivered.
func (j *JetStream) LastSeq() uint64 { return j.lastSeq.Load() }

// Healthy reports whether the log takes writes now.
func (j *JetStream) Healthy() bool { return j.Err() == nil }

// Err is ErrClosed after Close, and says so while the client is not connected to a NATS
// server (it reconnects by itself); nil otherwise.
func (j *JetStream) Err() error {
	if j.closed.Load() {
		return ErrClosed
	}
	if st := j.nc.Status(); st != nats.CONNECTED {
		return fmt.Errorf("feedback: not connected to NATS (%s)", st)
	}
	return nil
}

// Stats returns a copy of the log's counters: Appended and Duplicates count what this
// process's Appends answered, Commits its publish rounds.
func (j *JetStream) Stats() Stats {
	return Stats{Appended: j.appended.Load(), Duplicates: j.duplicates.Load(), Conflicts: j.conflicts.Load(),
		Commits: j.commits.Load(), LastSeq: j.lastSeq.Load(), Healthy: j.Healthy()}
}

// Skipped counts stream messages the consumer skipped: repeats of an event id stored earlier
// and messages that are not events.
func (j *JetStream) Skipped() uint64 { return j.skipped.Load() }

// snapshotKey is the key of snapshot name: the name itself when it is a valid key, else its
// base64 (URL alphabet) behind "b64.".
func snapshotKey(name string) string {
	if validKey.MatchString(name) {
		return name
	}
	return "b64." + base64.RawURLEncoding.EncodeToString([]byte(name))
}

var validKey = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)

// PutSnapshot saves data under name in the stream's key-value bucket with the sequence number
// it reflects (see Store.PutSnapshot); every replica reads the same value. A snapshot is one
// NATS message: one larger than the servers' max_payload (1 MiB by default; a learner's
// snapshot takes 4 bytes an item) is refused with an error that says so.
func (j *JetStream) PutSnapshot(name string, seq uint64, data []byte) error {
	if name == "" || len(name) > MaxIDLen {
		return fmt.Errorf("feedback: snapshot name must be 1 to %d bytes, got %d", MaxIDLen, len(name))
	}
	if last := j.LastSeq(); seq > last {
		return fmt.Errorf("feedback: snapshot %q at seq %d is past the last seq %d", name, seq, last)
	}
	if j.closed.Load() {
		return ErrClosed
	}
	if limit := j.nc.MaxPayload() - 1024; int64(8+len(data)) > limit {
		return fmt.Errorf("feedback: snapshot %q: %d bytes, more than the NATS servers' max_payload allows (%d): raise max_payload",
			name, 8+len(data), limit)
	}
	val := make([]byte, 8+len(data))
	binary.BigEndian.PutUint64(val, seq)
	copy(val[8:], data)
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.AckTimeout)
	defer cancel()
	if _, err := j.kv.Put(ctx, snapshotKey(name), val); err != nil {
		return fmt.Errorf("%w: put snapshot %q: %w", ErrNotAcknowledged, name, err)
	}
	return nil
}

// GetSnapshot returns the snapshot saved under name; ok is false when there is none.
func (j *JetStream) GetSnapshot(name string) (seq uint64, data []byte, ok bool, err error) {
	if j.closed.Load() {
		return 0, nil, false, ErrClosed
	}
	ctx, cancel := context.WithTimeout(context.Background(), j.cfg.AckTimeout)
	defer cancel()
	e, err := j.kv.Get(ctx, snapshotKey(name))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return 0, nil, false, nil
	}
	if err != nil {
		return 0, nil, false, fmt.Errorf("get snapshot %q: %w", name, err)
	}
	v := e.Value()
	if len(v) < 8 {
		return 0, nil, false, fmt.Errorf("snapshot %q: %w", name, errCorrupt)
	}
	return binary.BigEndian.Uint64(v), v[8:], true, nil
}

// Close releases the leases it holds, stops the consumer and closes the connection. It is
// idempotent.
func (j *JetStream) Close() error {
	j.leaseMu.Lock()
	if j.closed.Swap(true) {
		j.leaseMu.Unlock()
		return nil
	}
	held := j.held
	j.held = nil
	j.leaseMu.Unlock()
	for _, l := range held {
		l.Release() // the connection is still open
	}
	close(j.done)
	j.ccMu.Lock()
	j.cc.Stop()
	j.ccMu.Unlock()
	j.nc.Close()
	return nil
}
