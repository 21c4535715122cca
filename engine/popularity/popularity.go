// Package popularity keeps live item statistics that the engine reweights and explains with:
// interaction counts (and from them inverse propensities), a trending score that decays with
// time, and item co-occurrence within users' histories. Feedback updates them at once.
package popularity

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"time"
)

// Config sets the estimators. Zero fields take the documented defaults.
type Config struct {
	// Smoothing is the additive (Laplace) smoothing of counts in the propensity estimate
	// (default 1): p_i = (c_i + s) / (N + s*n) for n items and N interactions in all.
	Smoothing float64
	// ClipMin is the smallest propensity used (default 1e-4), so that a never-seen item does
	// not get an unbounded boost: p_i = max(p_i, ClipMin).
	ClipMin float64
	// HalfLife is the trending score's half-life (default 7 days): each interaction adds
	// 2^((t - t0)/HalfLife) to its item, so recent ones weigh more.
	HalfLife time.Duration
	// CoWindow is how many of a user's most recent items a new interaction co-occurs with
	// (default 20).
	CoWindow int
}

func (c Config) withDefaults() Config {
	if c.Smoothing <= 0 {
		c.Smoothing = 1
	}
	if c.ClipMin <= 0 {
		c.ClipMin = 1e-4
	}
	if c.HalfLife <= 0 {
		c.HalfLife = 7 * 24 * time.Hour
	}
	if c.CoWindow <= 0 {
		c.CoWindow = 20
	}
	return c
}

// Stats are the live statistics of a catalog of n items (rows 0..n-1). Safe for concurrent use.
type Stats struct {
	cfg Config

	mu       sync.RWMutex
	counts   []float64
	total    float64
	trend    []float64 // in units of 2^((t - epoch)/HalfLife)
	epoch    time.Time
	co       []map[int32]float32 // co[i][j]: users who had both i and j (within CoWindow)
	logProps []float64           // cached -log p_i, rebuilt lazily
	dirty    bool
}

// New returns empty statistics for n items.
func New(n int, cfg Config) *Stats {
	s := &Stats{cfg: cfg.withDefaults(), counts: make([]float64, n), trend: make([]float64, n),
		co: make([]map[int32]float32, n), dirty: true}
	return s
}

// Config returns the estimator settings (defaults filled in).
func (s *Stats) Config() Config { return s.cfg }

// Len is the number of items.
func (s *Stats) Len() int { return len(s.counts) }

// Observe records that a user with the given earlier items (oldest first) interacted with item
// at time t. It updates the count, the trending score and co-occurrence with the user's last
// CoWindow items.
func (s *Stats) Observe(item int, t time.Time, earlier []int) error {
	if item < 0 || item >= len(s.counts) {
		return fmt.Errorf("popularity: item %d out of range [0,%d)", item, len(s.counts))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[item]++
	s.total++
	if s.epoch.IsZero() {
		s.epoch = t
	}
	e := float64(t.Sub(s.epoch)) / float64(s.cfg.HalfLife)
	if e > 60 { // keep the scores finite: move the epoch to t and rescale
		scale := math.Exp2(-e)
		for i := range s.trend {
			s.trend[i] *= scale
		}
		s.epoch, e = t, 0
	}
	s.trend[item] += math.Exp2(e)
	if len(earlier) > s.cfg.CoWindow {
		earlier = earlier[len(earlier)-s.cfg.CoWindow:]
	}
	for _, j := range earlier {
		if j == item || j < 0 || j >= len(s.counts) {
			continue
		}
		s.addCo(item, j)
		s.addCo(j, item)
	}
	s.dirty = true
	return nil
}

func (s *Stats) addCo(i, j int) {
	if s.co[i] == nil {
		s.co[i] = map[int32]float32{}
	}
	s.co[i][int32(j)]++
}

// Count is item i's number of interactions.
func (s *Stats) Count(i int) float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.counts[i]
}

// Propensity is the smoothed, clipped share of interactions that item i has.
func (s *Stats) Propensity(i int) float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.propensity(i)
}

func (s *Stats) propensity(i int) float64 {
	n := float64(len(s.counts))
	p := (s.counts[i] + s.cfg.Smoothing) / (s.total + s.cfg.Smoothing*n)
	return max(p, s.cfg.ClipMin)
}

// Seed sets item i's count from earlier data (the training interactions a bundle ships) before
// live feedback adds to it. It does not touch trending or co-occurrence.
func (s *Stats) Seed(i int, count float64) {
	if count <= 0 || i < 0 || i >= len(s.counts) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.counts[i] += count
	s.total += count
	s.dirty = true
}

// ReweightAll is Reweight for every item: scores[i] belongs to item i.
func (s *Stats) ReweightAll(scores []float32, alpha float64) {
	if alpha == 0 {
		return
	}
	lp := s.logPropensities()
	for i := range scores {
		scores[i] -= float32(alpha * lp[i])
	}
}

// logPropensities returns log p_i for every item, recomputed only after counts changed. The
// returned slice is replaced, never modified, so it may be read without the lock.
func (s *Stats) logPropensities() []float64 {
	s.mu.RLock()
	if !s.dirty && s.logProps != nil {
		lp := s.logProps
		s.mu.RUnlock()
		return lp
	}
	s.mu.RUnlock()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dirty || s.logProps == nil {
		lp := make([]float64, len(s.counts))
		for i := range s.counts {
			lp[i] = math.Log(s.propensity(i))
		}
		s.logProps, s.dirty = lp, false
	}
	return s.logProps
}

// Reweight applies inverse-propensity reweighting to scores of items:
// score_i - alpha * log(p_i). Popular items (large p) move down as alpha grows; alpha 0 leaves
// scores unchanged.
func (s *Stats) Reweight(items []int, scores []float32, alpha float64) {
	if alpha == 0 {
		return
	}
	lp := s.logPropensities()
	for k, i := range items {
		scores[k] -= float32(alpha * lp[i])
	}
}

// Trending returns the top k items by decayed recent popularity, highest first.
func (s *Stats) Trending(k int) []int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	idx := make([]int, 0, len(s.trend))
	for i, v := range s.trend {
		if v > 0 {
			idx = append(idx, i)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		if s.trend[a] != s.trend[b] {
			if s.trend[a] > s.trend[b] {
				return -1
			}
			return 1
		}
		return a - b
	})
	if len(idx) > k {
		idx = idx[:k]
	}
	return idx
}

// CoOccurrence is the number of users (within the window) who had both i and j.
func (s *Stats) CoOccurrence(i, j int) float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return float64(s.co[i][int32(j)])
}
