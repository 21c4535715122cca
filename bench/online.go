package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/llm4rec/llm4rec/engine/batch"
	"github.com/llm4rec/llm4rec/engine/online"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/eval"
)

// File names written by the online bench.
const (
	OnlineJSON = "online.json"
	OnlinePlot = "online.png"
)

// The server's learner settings (server/config.go), the online bench's defaults.
const (
	ServerOnlineRate    = 0.05
	ServerOnlinePenalty = 0.01
)

// ForgettingTolerance is the largest acceptable drop of validation HR@10 after the replay.
const ForgettingTolerance = 0.01

// OnlineSetting is one learner setting.
type OnlineSetting struct {
	Rate    float64 `json:"rate"`
	Penalty float64 `json:"penalty"`
}

// DefaultOnlineSweep is the grid `bench online --sweep` replays: rates 0.01 to 2 and
// penalties 0.001 to 0.45 (each update scales every bias by 1 - rate*penalty, which must stay
// above 0).
func DefaultOnlineSweep() []OnlineSetting {
	var out []OnlineSetting
	for _, r := range []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2} {
		for _, p := range []float64{0.001, 0.01, 0.1, 0.2, 0.45} {
			out = append(out, OnlineSetting{r, p})
		}
	}
	return out
}

// OnlineConfig configures RunOnline. Bundle and Data are required; zero fields take the
// documented defaults.
type OnlineConfig struct {
	// Bundle is the model bundle folder; Data its training data (generic format or raw
	// MovieLens-100K).
	Bundle, Data string
	// Rate and Penalty set the learner (default: the server's, 0.05 and 0.01).
	Rate, Penalty float64
	// Sweep, when set, replays every setting through the learner alone from precomputed
	// log-probabilities, choosing on a replay of the validation interactions (never the
	// test ones) and reporting the test replay beside it.
	Sweep []OnlineSetting
	// Users limits the replay to the first Users users (by id) with a held-out item; 0: all.
	Users int
	// Workers is how many requests are in flight where their order does not matter (default
	// 32).
	Workers int
	// Runtime selects ONNX Runtime's library, provider and threads (default provider auto).
	Runtime ort.Options
	// Batch is the engine's batching (default: the engine's).
	Batch batch.Config
	// Seed drives the bootstrap of the confidence interval (default 1).
	Seed uint64
	// Progress receives a line per stage; nil writes nothing.
	Progress io.Writer
	// Logger receives the engine's load-time logs; nil discards them.
	Logger *slog.Logger
}

func (c OnlineConfig) validate() error {
	for _, s := range append([]OnlineSetting{{c.Rate, c.Penalty}}, c.Sweep...) {
		if math.IsNaN(s.Rate) || math.IsNaN(s.Penalty) || s.Rate <= 0 || s.Penalty <= 0 || s.Rate*s.Penalty >= 1 {
			return fmt.Errorf("bench: online rate %g, penalty %g: want both above 0 and rate*penalty below 1 "+
				"(each update scales every bias by 1 - rate*penalty)", s.Rate, s.Penalty)
		}
	}
	return nil
}

func (c OnlineConfig) withDefaults() OnlineConfig {
	if c.Rate <= 0 {
		c.Rate = ServerOnlineRate
	}
	if c.Penalty <= 0 {
		c.Penalty = ServerOnlinePenalty
	}
	if c.Workers <= 0 {
		c.Workers = 32
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	c.Batch.QueueSize = max(c.Batch.QueueSize, 1024, 2*c.Workers)
	return c
}

// OnlineResult is one replay's outcome.
type OnlineResult struct {
	OnlineSetting
	// Events is the number of replayed interactions; HitsWith and HitsWithout how many of
	// them were in the top 10 recommended just before, with the learner on and off.
	Events      int `json:"events"`
	HitsWith    int `json:"hits_with"`
	HitsWithout int `json:"hits_without"`
	// HRWith and HRWithout are the prequential HR@10; Gain is HRWith - HRWithout.
	HRWith    float64 `json:"hr@10_with"`
	HRWithout float64 `json:"hr@10_without"`
	Gain      float64 `json:"gain"`
	// ValUsers is the size of the fixed earlier set; ValBefore and ValAfter its HR@10 before
	// and after the replay; Forgetting is ValBefore - ValAfter.
	ValUsers   int     `json:"val_users"`
	ValBefore  float64 `json:"val_hr@10_before"`
	ValAfter   float64 `json:"val_hr@10_after"`
	Forgetting float64 `json:"forgetting"`
	// MaxBias is the largest |bias| after the replay.
	MaxBias float64 `json:"max_abs_bias"`
	// GainCI95 is a paired bootstrap 95% interval of Gain over events.
	GainCI95 [2]float64 `json:"gain_ci95"`
}

// OnlinePoint is one setting of the sweep: its tuning replay (validation interactions, the
// earlier set being each user's last training item) and its test replay.
type OnlinePoint struct {
	OnlineSetting
	Tune OnlineResult `json:"tune"`
	Test OnlineResult `json:"test"`
}

// OnlineReport is the result of RunOnline.
type OnlineReport struct {
	Kind          string `json:"kind"` // "online"
	Started       string `json:"started"`
	Host          Host   `json:"host"`
	Bundle        string `json:"bundle"`
	BundleName    string `json:"bundle_name"`
	BundleVersion string `json:"bundle_version"`
	Provider      string `json:"provider"`
	Data          string `json:"data"`
	DataNote      string `json:"data_note"`
	Protocol      string `json:"protocol"`
	// Engine is the replay through the engine as the server runs it.
	Engine OnlineResult `json:"engine"`
	// GainMet: prequential HR@10 with learning above without; ForgettingMet: forgetting below
	// ForgettingTolerance.
	GainMet       bool `json:"gain_met"`
	ForgettingMet bool `json:"forgetting_met"`
	// Agreement says whether the learner-only replay (precomputed log-probabilities, the
	// sweep's method) reproduces the engine's replay event by event.
	Agreement string `json:"agreement"`
	// Agree is the number of events on which the two replays agree.
	Agree int `json:"agree_events"`
	// Curve is the cumulative hits with and without learning after each event (for the plot).
	CurveWith    []int `json:"curve_with"`
	CurveWithout []int `json:"curve_without"`
	// Sweep and Chosen: every setting's replays, and the one chosen on the tuning replay: the
	// best tuning gain among the settings whose tuning gain is above noise (its bootstrap
	// interval above 0) and whose tuning forgetting is below the tolerance; nil when none is.
	Sweep   []OnlinePoint      `json:"sweep,omitempty"`
	Chosen  *OnlinePoint       `json:"chosen,omitempty"`
	Notes   []string           `json:"notes,omitempty"`
	Timings map[string]float64 `json:"timings_s"`
}

// replayEvent is one user's held-out interaction in the replay.
type replayEvent struct {
	user   int // index into the evaluated users
	target int
	time   int64
}

// timeOrder returns the users' events (target and time from pick) sorted by time, ties by the
// users' order; users whose pick is -1 are left out.
func timeOrder(n int, pick func(u int) (target int, t int64)) []replayEvent {
	var ev []replayEvent
	for u := 0; u < n; u++ {
		if target, t := pick(u); target >= 0 {
			ev = append(ev, replayEvent{u, target, t})
		}
	}
	slices.SortStableFunc(ev, func(a, b replayEvent) int {
		switch {
		case a.time < b.time:
			return -1
		case a.time > b.time:
			return 1
		}
		return a.user - b.user
	})
	return ev
}

// RunOnline measures the online learner prequentially: each evaluated user's test interaction
// is replayed in global time order as feedback; before each one the engine recommends the top
// 10 (history: training + validation, seen items excluded, IPS off), and after it the learner
// takes the server's step (Engine.LogProbs of the history before the event, then
// Learner().Update). The same replay without updates is the baseline. The fixed earlier set is
// each user's validation item with the training history, measured before and after.
func RunOnline(ctx context.Context, cfg OnlineConfig) (rep *OnlineReport, err error) {
	cfg = cfg.withDefaults()
	if cfg.Bundle == "" || cfg.Data == "" {
		return nil, errors.New("bench: online needs a bundle and a dataset")
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	start := time.Now()
	rep = &OnlineReport{Kind: "online", Started: start.UTC().Format(time.RFC3339), Host: thisHost(), Bundle: cfg.Bundle,
		Timings: map[string]float64{}}
	progress := newProgress(cfg.Progress)
	env, err := openEvalEnv(cfg.Bundle, cfg.Data, cfg.Runtime, cfg.Batch, cfg.Logger,
		recommend.Config{Online: online.Config{Rate: cfg.Rate, Penalty: cfg.Penalty}})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	eng, m := env.eng, env.eng.Manifest()
	rep.BundleName, rep.BundleVersion, rep.Provider = m.Name, m.Version, string(env.rt.Provider())
	rep.Data, rep.DataNote = env.data.Source, env.matchNote
	rep.Notes = append(rep.Notes, env.notes...)
	lr := eng.Learner()
	if lr == nil {
		return nil, errors.New("bench: the engine opened without an online learner")
	}
	users := env.set.users
	if cfg.Users > 0 && cfg.Users < len(users) {
		users = users[:cfg.Users]
	}
	n := len(eng.Items())
	rep.Protocol = fmt.Sprintf("%d users' test interactions (each user's last by time) replayed in time order; before each, "+
		"Engine.Recommend top %d (history = training + validation, seen excluded, IPS alpha 0); after each, with learning, "+
		"Engine.LogProbs(history before it; computed ahead, as it does not depend on the biases) and Learner().Update "+
		"(rate %g, penalty %g), as the server does; without learning, no update; live popularity is not updated (IPS is "+
		"off, so it would not rank). Earlier set: each user's validation item, history = training items, before and "+
		"after the replay",
		len(users), eval.K, cfg.Rate, cfg.Penalty)
	rep.Timings["load"] = time.Since(start).Seconds()

	testEv := timeOrder(len(users), func(u int) (int, int64) { return users[u].Test, users[u].TestTime })
	valHist := func(u int) []int { return users[u].Train }
	testHist := func(u int) []int { return users[u].TestHistory() }
	zero := 0.0

	// the fixed earlier set before, and the replay without learning: the biases are all 0
	t0 := time.Now()
	valBefore, err := engineHits(ctx, eng, len(users), valHist, func(u int) int { return users[u].Val }, cfg.Workers)
	if err != nil {
		return nil, err
	}
	without, err := engineHits(ctx, eng, len(users), testHist, func(u int) int { return users[u].Test }, cfg.Workers)
	if err != nil {
		return nil, err
	}
	rep.Timings["static"] = time.Since(t0).Seconds()
	progress.printf("online: earlier set and the replay without learning in %.1fs", time.Since(t0).Seconds())

	// log-probabilities of the histories before each test event: they do not depend on the
	// biases, so they are computed ahead, concurrently, and used in event order
	t0 = time.Now()
	lpTest, err := logProbsOf(ctx, eng, len(users), testHist, cfg.Workers)
	if err != nil {
		return nil, err
	}
	rep.Timings["log_probs"] = time.Since(t0).Seconds()

	// the replay with learning, in time order, through the engine
	t0 = time.Now()
	items := eng.Items()
	res := OnlineResult{OnlineSetting: OnlineSetting{cfg.Rate, cfg.Penalty}, Events: len(testEv)}
	engineWith := make([]bool, len(testEv))
	for i, e := range testEv {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		hist := testHist(e.user)
		ids := make([]string, len(hist))
		for j, r := range hist {
			ids[j] = items[r].ID
		}
		resp, err := eng.Recommend(ctx, recommend.Request{History: ids, K: eval.K, ExcludeSeen: true, Alpha: &zero})
		if err != nil {
			return nil, fmt.Errorf("bench: recommend for user %s: %w", users[e.user].ID, err)
		}
		engineWith[i] = slices.ContainsFunc(resp.Items, func(r recommend.Recommendation) bool { return r.ItemID == items[e.target].ID })
		if err := lr.Update(lpTest[e.user], e.target); err != nil {
			return nil, err
		}
		if engineWith[i] {
			res.HitsWith++
		}
		if without[e.user] {
			res.HitsWithout++
		}
		rep.CurveWith = append(rep.CurveWith, res.HitsWith)
		rep.CurveWithout = append(rep.CurveWithout, res.HitsWithout)
	}
	rep.Timings["replay"] = time.Since(t0).Seconds()
	progress.printf("online: replay of %d events with learning in %.1fs", len(testEv), time.Since(t0).Seconds())

	t0 = time.Now()
	valAfter, err := engineHits(ctx, eng, len(users), valHist, func(u int) int { return users[u].Val }, cfg.Workers)
	if err != nil {
		return nil, err
	}
	rep.Timings["earlier_after"] = time.Since(t0).Seconds()
	res.ValUsers = countTrue(users, func(u eval.SplitUser) bool { return u.Val >= 0 })
	res.ValBefore = float64(countHits(valBefore)) / float64(max(res.ValUsers, 1))
	res.ValAfter = float64(countHits(valAfter)) / float64(max(res.ValUsers, 1))
	for i := 0; i < n; i++ {
		res.MaxBias = math.Max(res.MaxBias, math.Abs(lr.Value(i)))
	}
	res.finish()
	rep.Engine = res
	rep.GainMet = res.Gain > 0
	rep.ForgettingMet = res.Forgetting < ForgettingTolerance
	hw := make([]bool, len(testEv))
	hwo := make([]bool, len(testEv))
	for i, e := range testEv {
		hw[i], hwo[i] = engineWith[i], without[e.user]
	}
	rep.Engine.GainCI95 = pairedBootstrap(hw, hwo, cfg.Seed)

	// the learner-only replay from the precomputed log-probabilities must reproduce the
	// engine's; it is what the sweep runs
	t0 = time.Now()
	lpVal, err := logProbsOf(ctx, eng, len(users), valHist, cfg.Workers)
	if err != nil {
		return nil, err
	}
	test := replaySpec{events: testEv, lp: lpTest, hist: testHist, earlierLP: lpVal, earlierHist: valHist,
		earlier: func(u int) int { return users[u].Val }, n: n}
	fast, fastWith := test.run(OnlineSetting{cfg.Rate, cfg.Penalty}, cfg.Seed)
	same := 0
	for i := range testEv {
		if fastWith[i] == engineWith[i] {
			same++
		}
	}
	rep.Agree = same
	rep.Agreement = fmt.Sprintf("the learner-only replay agrees with the engine's on %d of %d events (HR@10 with %.4f, "+
		"without %.4f, earlier set %.4f -> %.4f)", same, len(testEv), fast.HRWith, fast.HRWithout, fast.ValBefore, fast.ValAfter)
	rep.Timings["check"] = time.Since(t0).Seconds()

	if len(cfg.Sweep) > 0 {
		t0 = time.Now()
		lastTrainHist := func(u int) []int { return users[u].Train[:max(len(users[u].Train)-1, 0)] }
		lpLast, err := logProbsOf(ctx, eng, len(users), lastTrainHist, cfg.Workers)
		if err != nil {
			return nil, err
		}
		tune := replaySpec{
			events: timeOrder(len(users), func(u int) (int, int64) { return users[u].Val, users[u].ValTime }),
			lp:     lpVal, hist: valHist, earlierLP: lpLast, earlierHist: lastTrainHist, n: n,
			earlier: func(u int) int {
				if len(users[u].Train) < 2 {
					return -1
				}
				return users[u].Train[len(users[u].Train)-1]
			},
		}
		for _, s := range cfg.Sweep {
			p := OnlinePoint{OnlineSetting: s}
			p.Tune, _ = tune.run(s, cfg.Seed)
			p.Test, _ = test.run(s, cfg.Seed)
			rep.Sweep = append(rep.Sweep, p)
		}
		for i, p := range rep.Sweep {
			if p.Tune.GainCI95[0] > 0 && p.Tune.Forgetting < ForgettingTolerance && (rep.Chosen == nil || p.Tune.Gain > rep.Chosen.Tune.Gain) {
				rep.Chosen = &rep.Sweep[i]
			}
		}
		rep.Timings["sweep"] = time.Since(t0).Seconds()
		progress.printf("online: sweep of %d settings in %.1fs", len(cfg.Sweep), time.Since(t0).Seconds())
	}
	rep.Timings["total"] = time.Since(start).Seconds()
	return rep, nil
}

func (r *OnlineResult) finish() {
	if r.Events > 0 {
		r.HRWith = float64(r.HitsWith) / float64(r.Events)
		r.HRWithout = float64(r.HitsWithout) / float64(r.Events)
	}
	r.Gain = r.HRWith - r.HRWithout
	r.Forgetting = r.ValBefore - r.ValAfter
}

func countTrue(users []eval.SplitUser, f func(eval.SplitUser) bool) int {
	n := 0
	for _, u := range users {
		if f(u) {
			n++
		}
	}
	return n
}

func countHits(h []bool) int {
	n := 0
	for _, v := range h {
		if v {
			n++
		}
	}
	return n
}

// engineHits asks the engine, workers at once, whether each user's target (-1: skipped, a
// miss) is in the top 10 for the history (seen excluded, IPS off, the current biases).
func engineHits(ctx context.Context, eng *recommend.Engine, n int, hist func(int) []int, target func(int) int, workers int) ([]bool, error) {
	items := eng.Items()
	hits := make([]bool, n)
	zero := 0.0
	err := parallel(ctx, n, workers, func(u int) error {
		t := target(u)
		if t < 0 {
			return nil
		}
		h := hist(u)
		ids := make([]string, len(h))
		for i, r := range h {
			ids[i] = items[r].ID
		}
		resp, err := eng.Recommend(ctx, recommend.Request{History: ids, K: eval.K, ExcludeSeen: true, Alpha: &zero})
		if err != nil {
			return err
		}
		hits[u] = slices.ContainsFunc(resp.Items, func(r recommend.Recommendation) bool { return r.ItemID == items[t].ID })
		return nil
	})
	return hits, err
}

// logProbsOf computes Engine.LogProbs of each user's history, workers at once.
func logProbsOf(ctx context.Context, eng *recommend.Engine, n int, hist func(int) []int, workers int) ([][]float32, error) {
	items := eng.Items()
	out := make([][]float32, n)
	err := parallel(ctx, n, workers, func(u int) error {
		h := hist(u)
		ids := make([]string, len(h))
		for i, r := range h {
			ids[i] = items[r].ID
		}
		lp, err := eng.LogProbs(ctx, ids)
		out[u] = lp
		return err
	})
	return out, err
}

// parallel runs f(0..n-1) on workers goroutines and returns the first error.
func parallel(ctx context.Context, n, workers int, f func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for w := 0; w < min(workers, n); w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n || ctx.Err() != nil {
					return
				}
				if err := f(i); err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
					next.Store(int64(n))
					return
				}
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return fmt.Errorf("bench: %w", first)
	}
	return ctx.Err()
}

// replaySpec is a prequential replay from precomputed log-probabilities: lp[u] for the history
// before u's event, earlierLP[u] for u's history before the earlier item.
type replaySpec struct {
	events      []replayEvent
	lp          [][]float32
	hist        func(int) []int
	earlierLP   [][]float32
	earlierHist func(int) []int
	earlier     func(int) int
	n           int
}

// run replays the events through a fresh learner with setting s, ranking as the engine does
// (log-probabilities plus biases, seen excluded, ties by the lower row), and returns the
// result (its interval bootstrapped with seed) and each event's hit with learning.
func (r replaySpec) run(s OnlineSetting, seed uint64) (OnlineResult, []bool) {
	bias := online.NewBias(r.n, online.Config{Rate: s.Rate, Penalty: s.Penalty})
	res := OnlineResult{OnlineSetting: s, Events: len(r.events)}
	seen := make([]bool, r.n)
	score := make([]float64, r.n)
	scratch := make([]float32, r.n)
	hit := func(lp []float32, hist []int, target int, withBias bool) bool {
		copy(scratch, lp)
		if withBias {
			bias.Add(scratch)
		}
		for i, v := range scratch {
			score[i] = float64(v)
		}
		mark(seen, hist, true)
		top := eval.TopK(score, seen, eval.K)
		mark(seen, hist, false)
		return slices.Contains(top, target)
	}
	earlier := func() (int, int) {
		hits, users := 0, 0
		for u := range r.earlierLP {
			t := r.earlier(u)
			if t < 0 {
				continue
			}
			users++
			if hit(r.earlierLP[u], r.earlierHist(u), t, true) {
				hits++
			}
		}
		return hits, users
	}
	before, users := earlier()
	with := make([]bool, len(r.events))
	without := make([]bool, len(r.events))
	for i, e := range r.events {
		lp, h := r.lp[e.user], r.hist(e.user)
		with[i] = hit(lp, h, e.target, true)
		without[i] = hit(lp, h, e.target, false)
		if with[i] {
			res.HitsWith++
		}
		if without[i] {
			res.HitsWithout++
		}
		bias.Update(lp, e.target)
	}
	res.GainCI95 = pairedBootstrap(with, without, seed)
	after, _ := earlier()
	res.ValUsers = users
	if users > 0 {
		res.ValBefore, res.ValAfter = float64(before)/float64(users), float64(after)/float64(users)
	}
	for i := 0; i < r.n; i++ {
		res.MaxBias = math.Max(res.MaxBias, math.Abs(bias.Value(i)))
	}
	res.finish()
	return res, with
}

// pairedBootstrap is a 95% interval of mean(a) - mean(b) over paired events (2000
// resamples).
func pairedBootstrap(a, b []bool, seed uint64) [2]float64 {
	n := len(a)
	if n == 0 {
		return [2]float64{}
	}
	d := make([]float64, n)
	for i := range a {
		if a[i] {
			d[i]++
		}
		if b[i] {
			d[i]--
		}
	}
	rng := rand.New(rand.NewPCG(seed, 7))
	means := make([]float64, 2000)
	for s := range means {
		var sum float64
		for i := 0; i < n; i++ {
			sum += d[rng.IntN(n)]
		}
		means[s] = sum / float64(n)
	}
	slices.Sort(means)
	return [2]float64{Percentile(means, 2.5), Percentile(means, 97.5)}
}

// mark sets b[r] to v for every row r of rows.
func mark(b []bool, rows []int, v bool) {
	for _, r := range rows {
		b[r] = v
	}
}
