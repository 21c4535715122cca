package eval

import (
	"math"
	"math/rand/v2"
	"slices"

	"github.com/llm4rec/llm4rec/engine/online"
)

// LearnerSetting is a setting of the online learner (engine/online): its SGD step and its
// L2 pull towards the exported model per update.
type LearnerSetting struct {
	Rate    float64 `json:"rate"`
	Penalty float64 `json:"penalty"`
}

// ReplayResult is one replay's outcome.
type ReplayResult struct {
	LearnerSetting
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

// ReplayEvent is one user's held-out interaction in the replay.
type ReplayEvent struct {
	User   int // index into the evaluated users
	Target int
	Time   int64
}

// TimeOrder returns the users' events (target and time from pick) sorted by time, ties by the
// users' order; users whose pick is -1 are left out.
func TimeOrder(n int, pick func(u int) (target int, t int64)) []ReplayEvent {
	var ev []ReplayEvent
	for u := 0; u < n; u++ {
		if target, t := pick(u); target >= 0 {
			ev = append(ev, ReplayEvent{u, target, t})
		}
	}
	slices.SortStableFunc(ev, func(a, b ReplayEvent) int {
		switch {
		case a.Time < b.Time:
			return -1
		case a.Time > b.Time:
			return 1
		}
		return a.User - b.User
	})
	return ev
}

// Finish computes the rates, the gain and the forgetting from the counts.
func (r *ReplayResult) Finish() {
	if r.Events > 0 {
		r.HRWith = float64(r.HitsWith) / float64(r.Events)
		r.HRWithout = float64(r.HitsWithout) / float64(r.Events)
	}
	r.Gain = r.HRWith - r.HRWithout
	r.Forgetting = r.ValBefore - r.ValAfter
}

// Replay is a prequential replay from precomputed log-probabilities: lp[u] for the history
// before u's event, earlierLP[u] for u's history before the earlier item.
type Replay struct {
	Events []ReplayEvent
	// LP and Hist are each user's log-probabilities and history before the event.
	LP   [][]float32
	Hist func(u int) []int
	// EarlierLP, EarlierHist and Earlier are each user's log-probabilities, history and item
	// (-1: none) of the fixed earlier set, measured before and after the replay.
	EarlierLP   [][]float32
	EarlierHist func(u int) []int
	Earlier     func(u int) int
	// N is the catalog size.
	N int
	// Rank lists the k best unseen rows from final scores; nil: the plain top k (TopK). A
	// replay of an engine passes Engine.TopK, so the bundle's re-ranking applies.
	Rank func(score []float32, seen []bool, k int) []int
}

// Run replays the events through a fresh learner with setting s, ranking as the engine does
// (log-probabilities plus biases, seen excluded, ties by the lower row, listed by Rank), and returns the
// result (its interval bootstrapped with seed) and each event's hit with learning.
func (r Replay) Run(s LearnerSetting, seed uint64) (ReplayResult, []bool) {
	bias := online.NewBias(r.N, online.Config{Rate: s.Rate, Penalty: s.Penalty})
	res := ReplayResult{LearnerSetting: s, Events: len(r.Events)}
	seen := make([]bool, r.N)
	score := make([]float64, r.N)
	scratch := make([]float32, r.N)
	hit := func(lp []float32, hist []int, target int, withBias bool) bool {
		copy(scratch, lp)
		if withBias {
			bias.Add(scratch)
		}
		mark(seen, hist, true)
		var top []int
		if r.Rank != nil {
			top = r.Rank(scratch, seen, K)
		} else {
			for i, v := range scratch {
				score[i] = float64(v)
			}
			top = TopK(score, seen, K)
		}
		mark(seen, hist, false)
		return slices.Contains(top, target)
	}
	earlier := func() (int, int) {
		hits, users := 0, 0
		for u := range r.EarlierLP {
			t := r.Earlier(u)
			if t < 0 {
				continue
			}
			users++
			if hit(r.EarlierLP[u], r.EarlierHist(u), t, true) {
				hits++
			}
		}
		return hits, users
	}
	before, users := earlier()
	with := make([]bool, len(r.Events))
	without := make([]bool, len(r.Events))
	for i, e := range r.Events {
		lp, h := r.LP[e.User], r.Hist(e.User)
		with[i] = hit(lp, h, e.Target, true)
		without[i] = hit(lp, h, e.Target, false)
		if with[i] {
			res.HitsWith++
		}
		if without[i] {
			res.HitsWithout++
		}
		bias.Update(lp, e.Target)
	}
	res.GainCI95 = PairedBootstrap(with, without, seed)
	after, _ := earlier()
	res.ValUsers = users
	if users > 0 {
		res.ValBefore, res.ValAfter = float64(before)/float64(users), float64(after)/float64(users)
	}
	for i := 0; i < r.N; i++ {
		res.MaxBias = math.Max(res.MaxBias, math.Abs(bias.Value(i)))
	}
	res.Finish()
	return res, with
}

// PairedBootstrap is a 95% interval of mean(a) - mean(b) over paired events (2000
// resamples).
func PairedBootstrap(a, b []bool, seed uint64) [2]float64 {
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
	return [2]float64{means[49], means[1949]} // nearest rank: the 50th and the 1950th of 2000
}
