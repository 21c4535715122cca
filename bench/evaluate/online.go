package evaluate

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
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

// The server's learner settings (engine/online's defaults, which server/config.go uses), the
// online bench's defaults.
const (
	ServerOnlineRate    = online.DefaultRate
	ServerOnlinePenalty = online.DefaultPenalty
)

// ForgettingTolerance is the largest acceptable drop of validation HR@10 after the replay.
const ForgettingTolerance = 0.01

// DefaultOnlineSweep is the grid `bench online --sweep` replays: rates 0.01 to 2 and
// penalties 0.001 to 0.45 (each update scales every bias by 1 - rate*penalty, which must stay
// above 0).
func DefaultOnlineSweep() []eval.LearnerSetting {
	var out []eval.LearnerSetting
	for _, r := range []float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2} {
		for _, p := range []float64{0.001, 0.01, 0.1, 0.2, 0.45} {
			out = append(out, eval.LearnerSetting{Rate: r, Penalty: p})
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
	Sweep []eval.LearnerSetting
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
	for _, s := range append([]eval.LearnerSetting{{Rate: c.Rate, Penalty: c.Penalty}}, c.Sweep...) {
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
	if c.Seed == 0 {
		c.Seed = 1
	}
	engineDefaults(&c.Workers, &c.Logger, &c.Batch)
	return c
}

// OnlinePoint is one setting of the sweep: its tuning replay (validation interactions, the
// earlier set being each user's last training item) and its test replay.
type OnlinePoint struct {
	eval.LearnerSetting
	Tune eval.ReplayResult `json:"tune"`
	Test eval.ReplayResult `json:"test"`
}

// OnlineReport is the result of RunOnline.
type OnlineReport struct {
	report.Run           // kind "online"
	Bundle        string `json:"bundle"`
	BundleName    string `json:"bundle_name"`
	BundleVersion string `json:"bundle_version"`
	Provider      string `json:"provider"`
	Data          string `json:"data"`
	DataNote      string `json:"data_note"`
	Protocol      string `json:"protocol"`
	// Engine is the replay through the engine as the server runs it.
	Engine eval.ReplayResult `json:"engine"`
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
	rep = &OnlineReport{Run: report.NewRun("online", start), Bundle: cfg.Bundle,
		Timings: map[string]float64{}}
	env, err := openEnv(cfg.Bundle, cfg.Data, cfg.Runtime, recommend.Config{Batch: cfg.Batch, Logger: cfg.Logger,
		Online: online.Config{Rate: cfg.Rate, Penalty: cfg.Penalty}})
	if err != nil {
		return nil, err
	}
	defer func() { err = errors.Join(err, env.Close()) }()
	eng, m := env.Engine, env.Engine.Manifest()
	rep.BundleName, rep.BundleVersion, rep.Provider = m.Name, m.Version, string(env.Runtime.Provider())
	rep.Data, rep.DataNote = env.Data.Source, env.MatchNote
	rep.Notes = append(rep.Notes, env.Notes...)
	lr := eng.Learner()
	if lr == nil {
		return nil, errors.New("bench: the engine opened without an online learner")
	}
	users := env.Users
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

	testEv := eval.TimeOrder(len(users), func(u int) (int, int64) { return users[u].Test, users[u].TestTime })
	valHist := func(u int) []int { return users[u].Train }
	testHist := func(u int) []int { return users[u].TestHistory() }

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
	report.Progressf(cfg.Progress, "online: earlier set and the replay without learning in %.1fs", time.Since(t0).Seconds())

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
	res := eval.ReplayResult{LearnerSetting: eval.LearnerSetting{Rate: cfg.Rate, Penalty: cfg.Penalty}, Events: len(testEv)}
	engineWith := make([]bool, len(testEv))
	for i, e := range testEv {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		resp, err := eng.Recommend(ctx, eval.Request(items, testHist(e.User), 0))
		if err != nil {
			return nil, fmt.Errorf("bench: recommend for user %s: %w", users[e.User].ID, err)
		}
		engineWith[i] = slices.ContainsFunc(resp.Items, func(r recommend.Recommendation) bool { return r.ItemID == items[e.Target].ID })
		if err := lr.Update(lpTest[e.User], e.Target); err != nil {
			return nil, err
		}
		if engineWith[i] {
			res.HitsWith++
		}
		if without[e.User] {
			res.HitsWithout++
		}
		rep.CurveWith = append(rep.CurveWith, res.HitsWith)
		rep.CurveWithout = append(rep.CurveWithout, res.HitsWithout)
	}
	rep.Timings["replay"] = time.Since(t0).Seconds()
	report.Progressf(cfg.Progress, "online: replay of %d events with learning in %.1fs", len(testEv), time.Since(t0).Seconds())

	t0 = time.Now()
	valAfter, err := engineHits(ctx, eng, len(users), valHist, func(u int) int { return users[u].Val }, cfg.Workers)
	if err != nil {
		return nil, err
	}
	rep.Timings["earlier_after"] = time.Since(t0).Seconds()
	for u := range users {
		if users[u].Val >= 0 {
			res.ValUsers++
		}
	}
	res.ValBefore = float64(countHits(valBefore)) / float64(max(res.ValUsers, 1))
	res.ValAfter = float64(countHits(valAfter)) / float64(max(res.ValUsers, 1))
	for i := 0; i < n; i++ {
		res.MaxBias = math.Max(res.MaxBias, math.Abs(lr.Value(i)))
	}
	res.Finish()
	rep.Engine = res
	rep.GainMet = res.Gain > 0
	rep.ForgettingMet = res.Forgetting < ForgettingTolerance
	hw := make([]bool, len(testEv))
	hwo := make([]bool, len(testEv))
	for i, e := range testEv {
		hw[i], hwo[i] = engineWith[i], without[e.User]
	}
	rep.Engine.GainCI95 = eval.PairedBootstrap(hw, hwo, cfg.Seed)

	// the learner-only replay from the precomputed log-probabilities must reproduce the
	// engine's; it is what the sweep runs
	t0 = time.Now()
	lpVal, err := logProbsOf(ctx, eng, len(users), valHist, cfg.Workers)
	if err != nil {
		return nil, err
	}
	test := eval.Replay{Events: testEv, LP: lpTest, Hist: testHist, EarlierLP: lpVal, EarlierHist: valHist,
		Earlier: func(u int) int { return users[u].Val }, N: n, Rank: eng.TopK}
	fast, fastWith := test.Run(res.LearnerSetting, cfg.Seed)
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
		tune := eval.Replay{
			Events: eval.TimeOrder(len(users), func(u int) (int, int64) { return users[u].Val, users[u].ValTime }),
			LP:     lpVal, Hist: valHist, EarlierLP: lpLast, EarlierHist: lastTrainHist, N: n, Rank: eng.TopK,
			Earlier: func(u int) int {
				if len(users[u].Train) < 2 {
					return -1
				}
				return users[u].Train[len(users[u].Train)-1]
			},
		}
		for _, s := range cfg.Sweep {
			p := OnlinePoint{LearnerSetting: s}
			p.Tune, _ = tune.Run(s, cfg.Seed)
			p.Test, _ = test.Run(s, cfg.Seed)
			rep.Sweep = append(rep.Sweep, p)
		}
		for i, p := range rep.Sweep {
			if p.Tune.GainCI95[0] > 0 && p.Tune.Forgetting < ForgettingTolerance && (rep.Chosen == nil || p.Tune.Gain > rep.Chosen.Tune.Gain) {
				rep.Chosen = &rep.Sweep[i]
			}
		}
		rep.Timings["sweep"] = time.Since(t0).Seconds()
		report.Progressf(cfg.Progress, "online: sweep of %d settings in %.1fs", len(cfg.Sweep), time.Since(t0).Seconds())
	}
	rep.Timings["total"] = time.Since(start).Seconds()
	return rep, nil
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
	var asked []int
	for u := 0; u < n; u++ {
		if target(u) >= 0 {
			asked = append(asked, u)
		}
	}
	items := eng.Items()
	tops, err := eval.Lists(ctx, eng, len(asked), workers, func(i int) recommend.Request { return eval.Request(items, hist(asked[i]), 0) })
	hits := make([]bool, n)
	for i, u := range asked {
		hits[u] = err == nil && slices.Contains(tops[i], target(u))
	}
	return hits, err
}

// logProbsOf computes Engine.LogProbs of each user's history, workers at once.
func logProbsOf(ctx context.Context, eng *recommend.Engine, n int, hist func(int) []int, workers int) ([][]float32, error) {
	items := eng.Items()
	out := make([][]float32, n)
	err := eval.Parallel(ctx, n, workers, func(u int) (err error) {
		out[u], err = eng.LogProbs(ctx, eval.IDs(items, hist(u)))
		return err
	})
	return out, err
}
