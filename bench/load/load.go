// Package load is `llm4rec bench http`: it loads a running server's /v1/recommend and
// /v1/feedback (open loop at a rate, or closed loop at a concurrency, through vegeta) with a
// request mix drawn from a dataset, and reports rates, exact latency percentiles per request
// kind, statuses and errors, as a table, JSON and plots.
package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/bench/synth"
	"github.com/llm4rec/llm4rec/eval"
)

// Request kinds of the HTTP load: four kinds of /v1/recommend and /v1/feedback.
const (
	KindHistory  = "history"  // history only
	KindQuery    = "query"    // history and a query text
	KindImage    = "image"    // history and an image (JPEG or PNG)
	KindAudio    = "audio"    // history and a WAV clip
	KindFeedback = "feedback" // POST /v1/feedback
)

// recommendKinds are the kinds a mix weighs, in order.
var recommendKinds = []string{KindHistory, KindQuery, KindImage, KindAudio}

// Mix weighs the recommend kinds; weights need not sum to 100.
type Mix map[string]float64

// DefaultMix is history=60,query=25,image=10,audio=5.
func DefaultMix() Mix {
	return Mix{KindHistory: 60, KindQuery: 25, KindImage: 10, KindAudio: 5}
}

// ParseMix reads "history=60,query=25,image=10,audio=5"; kinds left out weigh 0.
func ParseMix(s string) (Mix, error) {
	m := Mix{}
	for _, f := range report.SplitList(s) {
		k, v, ok := strings.Cut(f, "=")
		k = strings.ToLower(strings.TrimSpace(k))
		if !ok || !slices.Contains(recommendKinds, k) {
			return nil, fmt.Errorf("bench: mix entry %q: want KIND=WEIGHT with KIND one of %s", f, strings.Join(recommendKinds, ", "))
		}
		w, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || w < 0 || math.IsInf(w, 0) || math.IsNaN(w) {
			return nil, fmt.Errorf("bench: mix entry %q: weight must be a non-negative number", f)
		}
		m[k] = w
	}
	var sum float64
	for _, w := range m {
		sum += w
	}
	if sum <= 0 {
		return nil, fmt.Errorf("bench: mix %q weighs nothing", s)
	}
	return m, nil
}

func (m Mix) String() string {
	var parts []string
	for _, k := range recommendKinds {
		if w, ok := m[k]; ok {
			parts = append(parts, fmt.Sprintf("%s=%g", k, w))
		}
	}
	return strings.Join(parts, ",")
}

// Config configures Run. Zero fields take the documented defaults; URL is required.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8080, or several, comma-separated
	// (replicas on one shared feedback log): requests go to each in turn.
	URL string
	// Rate is requests started per second (open loop: requests start on schedule whatever the
	// answers, up to Concurrency in flight). 0 means closed loop: Concurrency callers, each
	// sending its next request as soon as the previous one is answered.
	Rate float64
	// Concurrency is the callers of the closed loop (default 8), and the most requests in
	// flight of the open loop (default 0 there: unbounded).
	Concurrency int
	// Duration is how long requests are started (default 10s); answers still outstanding
	// are awaited.
	Duration time.Duration
	// Mix weighs the recommend kinds (default DefaultMix).
	Mix Mix
	// FeedbackShare is the fraction of all requests that are POST /v1/feedback (default 0:
	// feedback is durable state on the server, so writing it is asked for explicitly).
	FeedbackShare float64
	// FeedbackBatch is the events per feedback request (default 1: one event object;
	// above 1: {"events":[...]}).
	FeedbackBatch int
	// Data is where histories, queries and feedback come from (default: SyntheticDataset(1682)).
	Data *eval.Dataset
	// Key is sent as "Authorization: Bearer KEY" when set.
	Key string
	// K is the items each recommendation asks for (default 10).
	K int
	// MaxHistory bounds the history sent with a request (default 50, the default bundle's
	// fusion window).
	MaxHistory int
	// SendUserID adds the data's user id to recommend requests, so that the server adds the
	// user's live history (from feedback) to the one sent.
	SendUserID bool
	// RepeatContent sends queries, images and audio drawn from a fixed pool, so that the
	// server's embedding cache answers repeats; by default every query, image and clip
	// carries distinct bytes and reaches the encoders.
	RepeatContent bool
	// Timeout bounds one request (default 30s).
	Timeout time.Duration
	// Seed makes the request sequence reproducible (default 1).
	Seed uint64
	// Progress receives a line every ProgressEvery (default 2s), written as answers arrive;
	// nil writes nothing.
	Progress      io.Writer
	ProgressEvery time.Duration
}

func (c Config) withDefaults() Config {
	if c.Rate == 0 && c.Concurrency <= 0 {
		c.Concurrency = 8
	}
	if c.Duration <= 0 {
		c.Duration = 10 * time.Second
	}
	if c.Mix == nil {
		c.Mix = DefaultMix()
	}
	if c.FeedbackBatch <= 0 {
		c.FeedbackBatch = 1
	}
	if c.Data == nil {
		c.Data = SyntheticDataset(1682)
	}
	if c.K <= 0 {
		c.K = 10
	}
	if c.MaxHistory <= 0 {
		c.MaxHistory = 50
	}
	if c.Timeout <= 0 {
		c.Timeout = 30 * time.Second
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.ProgressEvery <= 0 {
		c.ProgressEvery = 2 * time.Second
	}
	return c
}

func (c Config) validate() error {
	for _, one := range strings.Split(c.URL, ",") {
		u, err := url.Parse(strings.TrimSpace(one))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return fmt.Errorf("bench: url %q: want http://HOST:PORT or https://HOST:PORT, or several comma-separated", one)
		}
	}
	if c.Rate < 0 || math.IsNaN(c.Rate) || math.IsInf(c.Rate, 0) {
		return fmt.Errorf("bench: rate %v: want a non-negative number", c.Rate)
	}
	if c.Concurrency < 0 {
		return fmt.Errorf("bench: concurrency %d must not be negative", c.Concurrency)
	}
	if c.FeedbackShare < 0 || c.FeedbackShare > 1 {
		return fmt.Errorf("bench: feedback share %v: want 0 to 1", c.FeedbackShare)
	}
	if c.FeedbackShare < 1 {
		var sum float64
		for _, w := range c.Mix {
			sum += w
		}
		if sum <= 0 {
			return errors.New("bench: the mix weighs nothing")
		}
	}
	return nil
}

// Report is the result of Run.
type Report struct {
	report.Run        // kind "http"; Host is the load generator's machine
	URL        string `json:"url"`
	// Mode is "closed-loop" (Concurrency callers) or "open-loop" (Rate requests per second).
	Mode          string  `json:"mode"`
	RateAsked     float64 `json:"rate_asked,omitempty"`
	Concurrency   int     `json:"concurrency,omitempty"`
	DurationS     float64 `json:"duration_s"`
	Mix           string  `json:"mix"`
	FeedbackShare float64 `json:"feedback_share"`
	Data          string  `json:"data"`
	UniqueContent bool    `json:"unique_content"`

	Requests int `json:"requests"`
	OK       int `json:"ok"` // 2xx answers
	// Seconds is from the first request's start to the last answer.
	Seconds float64 `json:"seconds"`
	// Rate is the requests started per second, over the time requests were being started.
	Rate float64 `json:"rate"`
	// Throughput is 2xx answers per second, over Seconds.
	Throughput float64 `json:"throughput"`
	// Latency covers every request, answered or failed; LatencyOK only the 2xx ones.
	Latency   report.Summary `json:"latency"`
	LatencyOK report.Summary `json:"latency_ok"`
	// Status counts answers by HTTP status; "error" counts requests that got none
	// (connection refused, timeout).
	Status map[string]int `json:"status"`
	// Errors counts error messages (status line with the API's error code and message, or the
	// transport error), at most 20 distinct.
	Errors   map[string]int       `json:"errors,omitempty"`
	ByKind   map[string]*KindStat `json:"by_kind"`
	BytesIn  uint64               `json:"bytes_in"`
	BytesOut uint64               `json:"bytes_out"`
	// Timeline has one entry per second of the run.
	Timeline []Second `json:"timeline"`

	samples []sample // every request, for plots
}

// KindStat is one request kind's share of the run.
type KindStat struct {
	Requests  int            `json:"requests"`
	OK        int            `json:"ok"`
	Status    map[string]int `json:"status"`
	Latency   report.Summary `json:"latency"`
	LatencyOK report.Summary `json:"latency_ok"`
}

// Second is one second of the run: requests started in it and their latencies.
type Second struct {
	T        int     `json:"t"`
	Requests int     `json:"requests"`
	OK       int     `json:"ok"`
	P50      float64 `json:"p50_ms"`
	P99      float64 `json:"p99_ms"`
}

type sample struct {
	start   time.Duration // since the first request
	latency time.Duration
	kind    string
	code    int
}

// requestGen builds the requests of a run. It is safe for concurrent use.
type requestGen struct {
	cfg       Config
	bases     []string // the servers' base URLs, taken in turn
	header    http.Header
	seq       atomic.Uint64
	thresh    []float64 // cumulative probabilities of recommendKinds, scaled to 1-FeedbackShare
	images    []synth.Tagged
	wavs      []synth.Tagged
	runID     string
	rate      int // audio sample rate
	itemIndex map[string]int
}

func newRequestGen(cfg Config) *requestGen {
	g := &requestGen{cfg: cfg, bases: baseURLs(cfg.URL), header: http.Header{"Content-Type": {"application/json"}},
		runID: strconv.FormatInt(time.Now().UnixNano(), 36)}
	if cfg.Key != "" {
		g.header.Set("Authorization", "Bearer "+cfg.Key)
	}
	var sum float64
	for _, k := range recommendKinds {
		sum += cfg.Mix[k]
	}
	acc := 0.0
	for _, k := range recommendKinds {
		if sum > 0 {
			acc += cfg.Mix[k] / sum * (1 - cfg.FeedbackShare)
		}
		g.thresh = append(g.thresh, acc)
	}
	// small uploads like a phone's: posters and photos, half JPEG, half PNG
	sizes := [][2]int{{182, 268}, {256, 384}, {320, 240}, {400, 300}, {224, 224}, {300, 450}, {240, 320}, {160, 240}}
	for i, s := range sizes {
		img := synth.Image(s[0], s[1], cfg.Seed*100+uint64(i))
		if i%2 == 0 {
			g.images = append(g.images, synth.NewTagged(synth.EncodeJPEG(img)))
		} else {
			g.images = append(g.images, synth.NewTagged(synth.EncodePNG(img)))
		}
	}
	// clips of 1 to 4 seconds at common rates
	for i, sec := range []float64{1, 2, 3, 4} {
		rate := []int{16000, 22050, 44100, 16000}[i]
		g.wavs = append(g.wavs, synth.NewTagged(synth.WAV(int(sec*float64(rate)), rate, cfg.Seed*100+uint64(i))))
	}
	return g
}

func (g *requestGen) kind(rng *rand.Rand) string {
	x := rng.Float64()
	for i, t := range g.thresh {
		if x < t {
			return recommendKinds[i]
		}
	}
	return KindFeedback
}

// recommendBody is the JSON of POST /v1/recommend (server/openapi.json) but for the media,
// which recommend appends by hand: base64 of a large file is the bulk of the body, and
// json.Marshal would scan it byte by byte.
type recommendBody struct {
	UserID      string   `json:"user_id,omitempty"`
	History     []string `json:"history,omitempty"`
	Query       string   `json:"query,omitempty"`
	K           int      `json:"k"`
	ExcludeSeen bool     `json:"exclude_seen"`
}

type feedbackEvent struct {
	EventID   string  `json:"event_id"`
	UserID    string  `json:"user_id"`
	ItemID    string  `json:"item_id"`
	Type      string  `json:"type"`
	Timestamp string  `json:"timestamp"`
	Value     float64 `json:"value,omitempty"`
}

var feedbackTypes = []string{"view", "view", "view", "click", "click", "like", "rating"}

// user draws a user and the history to send (the last MaxHistory items before a random
// point of the user's history, at least one item).
func (g *requestGen) user(rng *rand.Rand) (string, []string) {
	d := g.cfg.Data
	if len(d.Users) == 0 {
		n := 1 + rng.IntN(g.cfg.MaxHistory)
		h := make([]string, n)
		for i := range h {
			h[i] = d.Items[rng.IntN(len(d.Items))].ID
		}
		return "bench-user-" + strconv.Itoa(rng.IntN(1000)), h
	}
	u := d.Users[rng.IntN(len(d.Users))]
	end := 1 + rng.IntN(len(u.Items))
	return u.ID, u.Items[max(0, end-g.cfg.MaxHistory):end]
}

// baseURLs splits Config.URL into the servers' base URLs.
func baseURLs(list string) []string {
	var out []string
	for _, u := range strings.Split(list, ",") {
		out = append(out, strings.TrimRight(strings.TrimSpace(u), "/"))
	}
	return out
}

// target fills t with the next request; vegeta calls it from many workers at once.
func (g *requestGen) target(t *vegeta.Target) error {
	n := g.seq.Add(1)
	rng := rand.New(rand.NewPCG(g.cfg.Seed, n))
	kind := g.kind(rng)
	t.Method, t.Header = http.MethodPost, g.header
	var (
		body []byte
		err  error
	)
	base := g.bases[n%uint64(len(g.bases))]
	if kind == KindFeedback {
		t.URL = base + "/v1/feedback#" + kind
		body, err = g.feedback(rng, n)
	} else {
		t.URL = base + "/v1/recommend#" + kind // the fragment is not sent; it labels the result
		body, err = g.recommend(rng, kind, n)
	}
	t.Body = body
	return err
}

func (g *requestGen) recommend(rng *rand.Rand, kind string, n uint64) ([]byte, error) {
	uid, hist := g.user(rng)
	req := recommendBody{History: hist, K: g.cfg.K, ExcludeSeen: true}
	if g.cfg.SendUserID {
		req.UserID = uid
	}
	unique := !g.cfg.RepeatContent
	var media *synth.Tagged
	field := ""
	switch kind {
	case KindQuery:
		it := g.cfg.Data.Items[rng.IntN(len(g.cfg.Data.Items))]
		req.Query = queryText(it)
		if unique {
			req.Query = fmt.Sprintf("%s, %s", req.Query, synth.RandomText(rng, 3))
		}
	case KindImage:
		media, field = &g.images[rng.IntN(len(g.images))], "image"
	case KindAudio:
		media, field = &g.wavs[rng.IntN(len(g.wavs))], "audio"
	}
	body, err := json.Marshal(req)
	if err != nil || media == nil {
		return body, err
	}
	// {...} -> {...,"image":"BASE64"}
	out := make([]byte, 0, len(body)+len(media.Plain)+64)
	out = append(out, body[:len(body)-1]...)
	out = append(out, `,"`+field+`":"`...)
	out = media.AppendBase64(out, n, unique)
	return append(out, `"}`...), nil
}

func (g *requestGen) feedback(rng *rand.Rand, n uint64) ([]byte, error) {
	evs := make([]feedbackEvent, g.cfg.FeedbackBatch)
	now := time.Now().UTC().Format(time.RFC3339)
	for i := range evs {
		uid, hist := g.user(rng)
		item := g.cfg.Data.Items[rng.IntN(len(g.cfg.Data.Items))].ID
		if len(hist) > 0 && rng.IntN(2) == 0 {
			item = hist[rng.IntN(len(hist))]
		}
		typ := feedbackTypes[rng.IntN(len(feedbackTypes))]
		ev := feedbackEvent{EventID: fmt.Sprintf("bench-%s-%d-%d", g.runID, n, i), UserID: uid, ItemID: item, Type: typ, Timestamp: now}
		if typ == "rating" {
			ev.Value = float64(1 + rng.IntN(5))
		}
		evs[i] = ev
	}
	if len(evs) == 1 {
		return json.Marshal(evs[0])
	}
	return json.Marshal(map[string]any{"events": evs})
}

// Run runs the load and returns its report. Cancelling ctx stops starting requests
// early; the report covers what ran.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if len(cfg.Data.Items) == 0 {
		return nil, errors.New("bench: the dataset has no items")
	}
	gen := newRequestGen(cfg)
	rep := &Report{Run: report.NewRun("http", time.Now()), URL: cfg.URL,
		DurationS: cfg.Duration.Seconds(), Mix: cfg.Mix.String(), FeedbackShare: cfg.FeedbackShare,
		Data: cfg.Data.Source, UniqueContent: !cfg.RepeatContent, Concurrency: cfg.Concurrency}
	opts := []func(*vegeta.Attacker){vegeta.Timeout(cfg.Timeout), vegeta.KeepAlive(true), vegeta.MaxBody(2048)}
	var pacer vegeta.Pacer
	if cfg.Rate == 0 {
		rep.Mode = "closed-loop"
		pacer = vegeta.ConstantPacer{} // zero value: as fast as the workers answer
		opts = append(opts, vegeta.Workers(uint64(cfg.Concurrency)), vegeta.MaxWorkers(uint64(cfg.Concurrency)),
			vegeta.Connections(cfg.Concurrency))
	} else {
		rep.Mode, rep.RateAsked = "open-loop", cfg.Rate
		pacer = ratePacer(cfg.Rate)
		if cfg.Concurrency > 0 {
			opts = append(opts, vegeta.Workers(uint64(min(cfg.Concurrency, int(vegeta.DefaultWorkers)))),
				vegeta.MaxWorkers(uint64(cfg.Concurrency)), vegeta.Connections(cfg.Concurrency))
		}
	}
	atk := vegeta.NewAttacker(opts...)
	results := atk.Attack(gen.target, pacer, cfg.Duration, "llm4rec")
	stopWatch := context.AfterFunc(ctx, func() { atk.Stop() })
	defer stopWatch()

	var first time.Time
	// progress: a line every ProgressEvery, written as results arrive
	var count, okCount, last int
	var window []float64 // latencies since the last line
	begin := time.Now()
	lastAt := begin
	status := map[string]int{}
	errs := map[string]int{}
	for res := range results {
		kind := KindHistory
		if i := strings.LastIndexByte(res.URL, '#'); i >= 0 {
			kind = res.URL[i+1:]
		}
		if first.IsZero() || res.Timestamp.Before(first) {
			first = res.Timestamp
		}
		// start holds Unix nanoseconds until summarize makes it relative to the first request
		rep.samples = append(rep.samples, sample{start: time.Duration(res.Timestamp.UnixNano()), latency: res.Latency,
			kind: kind, code: int(res.Code)})
		rep.BytesIn += res.BytesIn
		rep.BytesOut += res.BytesOut
		status[statusKey(int(res.Code))]++
		count++
		if res.Code >= 200 && res.Code < 300 {
			okCount++
		} else if msg := errorMessage(res); errs[msg] > 0 || len(errs) < 20 {
			errs[msg]++
		}
		if cfg.Progress == nil {
			continue
		}
		window = append(window, float64(res.Latency)/1e6)
		if now := time.Now(); now.Sub(lastAt) >= cfg.ProgressEvery {
			fmt.Fprintf(cfg.Progress, "bench http: %4.0fs/%.0fs  %d requests (%.1f/s now), %.1f%% ok, p99 %.1f ms\n",
				now.Sub(begin).Seconds(), cfg.Duration.Seconds(), count, float64(count-last)/now.Sub(lastAt).Seconds(),
				100*float64(okCount)/float64(count), report.SummarizeMillis(window).P99)
			last, lastAt, window = count, now, window[:0]
		}
	}
	rep.Status, rep.Errors = status, errs
	if len(errs) == 0 {
		rep.Errors = nil
	}
	rep.summarize(first)
	return rep, nil
}

// ratePacer paces r requests per second (fractions allowed).
func ratePacer(r float64) vegeta.Pacer {
	if r >= 1 && r == math.Trunc(r) {
		return vegeta.ConstantPacer{Freq: int(r), Per: time.Second}
	}
	// r per second = 1000*r per 1000 s, rounded to whole requests per period
	return vegeta.ConstantPacer{Freq: max(1, int(math.Round(r*1000))), Per: 1000 * time.Second}
}

func statusKey(code int) string {
	if code == 0 {
		return "error"
	}
	return strconv.Itoa(code)
}

// errorMessage names a failure: the status line with the API's error code and message, or
// the transport error, shortened.
func errorMessage(res *vegeta.Result) string {
	msg := res.Error
	if res.Code != 0 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		if json.Unmarshal(res.Body, &e) == nil && e.Error.Code != "" {
			msg += " (" + e.Error.Code
			if e.Error.Message != "" {
				msg += ": " + e.Error.Message
			}
			msg += ")"
		}
	}
	if msg == "" {
		msg = "status " + strconv.Itoa(int(res.Code))
	}
	if len(msg) > 160 {
		msg = msg[:160] + "..."
	}
	return msg
}

// summarize computes the report's figures from its samples; samples' start holds absolute
// Unix nanoseconds until then.
func (rep *Report) summarize(first time.Time) {
	rep.ByKind = map[string]*KindStat{}
	var all, ok []float64
	perKindAll := map[string][]float64{}
	perKindOK := map[string][]float64{}
	var lastStart, lastEnd time.Duration
	f0 := time.Duration(first.UnixNano())
	for i := range rep.samples {
		s := &rep.samples[i]
		s.start -= f0
		ms := float64(s.latency) / 1e6
		ks := rep.ByKind[s.kind]
		if ks == nil {
			ks = &KindStat{Status: map[string]int{}}
			rep.ByKind[s.kind] = ks
		}
		ks.Requests++
		ks.Status[statusKey(s.code)]++
		all = append(all, ms)
		perKindAll[s.kind] = append(perKindAll[s.kind], ms)
		if s.code >= 200 && s.code < 300 {
			ks.OK++
			ok = append(ok, ms)
			perKindOK[s.kind] = append(perKindOK[s.kind], ms)
		}
		lastStart = max(lastStart, s.start)
		lastEnd = max(lastEnd, s.start+s.latency)
	}
	rep.Requests, rep.OK = len(all), len(ok)
	rep.Seconds = lastEnd.Seconds()
	if lastStart > 0 {
		rep.Rate = float64(rep.Requests-1) / lastStart.Seconds()
	}
	if rep.Seconds > 0 {
		rep.Throughput = float64(rep.OK) / rep.Seconds
	}
	rep.Latency, rep.LatencyOK = report.SummarizeMillis(all), report.SummarizeMillis(ok)
	for k, ks := range rep.ByKind {
		ks.Latency, ks.LatencyOK = report.SummarizeMillis(perKindAll[k]), report.SummarizeMillis(perKindOK[k])
	}
	sort.Slice(rep.samples, func(i, j int) bool { return rep.samples[i].start < rep.samples[j].start })
	var cur []float64
	sec := Second{}
	flush := func() {
		if sec.Requests > 0 {
			s := report.SummarizeMillis(cur)
			sec.P50, sec.P99 = s.P50, s.P99
			rep.Timeline = append(rep.Timeline, sec)
		}
	}
	for _, s := range rep.samples {
		if t := int(s.start / time.Second); t != sec.T {
			flush()
			sec, cur = Second{T: t}, cur[:0]
		}
		sec.Requests++
		if s.code >= 200 && s.code < 300 {
			sec.OK++
		}
		cur = append(cur, float64(s.latency)/1e6)
	}
	flush()
}
