// Package popularity keeps live item statistics that the engine reweights and explains with:
// interaction counts (and from them inverse propensities), a trending score that decays with
// time, and item co-occurrence within users' histories. Feedback updates them at once.
//
// Live holds the statistics keyed by item id, so that they outlive a model: a server keeps one
// Live for its lifetime and binds every engine it loads to it. Stats is one catalog's view of
// a Live, by catalog row, with the catalog's own seed counts (the training interactions a
// bundle ships) and propensity settings. A reload to a bundle with another catalog order, or
// with items the previous one lacked, reads the same counts; feedback observed through any
// view is seen by every other.
package popularity

import (
	"fmt"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/viterin/vek"
	"github.com/viterin/vek/vek32"
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

// Live is the statistics of every item that has an id, keyed by id: counts, trending scores
// and co-occurrence. It uses its Config's HalfLife and CoWindow; the propensity settings
// belong to each Stats bound to it. Safe for concurrent use.
type Live struct {
	cfg Config

	mu     sync.RWMutex
	slots  map[string]int32 // item id -> slot
	counts []float64
	trend  []float64 // in units of 2^((t - epoch)/HalfLife)
	epoch  time.Time
	co     []map[int32]float32 // co[i][j]: users who had both i and j (within CoWindow)
	// version grows with every observation; views rebuild their caches when it moved.
	version atomic.Uint64
}

// NewLive returns empty statistics.
func NewLive(cfg Config) *Live {
	return &Live{cfg: cfg.withDefaults(), slots: map[string]int32{}}
}

// Config returns the settings (defaults filled in).
func (l *Live) Config() Config { return l.cfg }

// Len is the number of items known: observed or bound by a catalog.
func (l *Live) Len() int {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return len(l.counts)
}

// slot returns id's slot, creating it. The write lock is held.
func (l *Live) slot(id string) int32 {
	if i, ok := l.slots[id]; ok {
		return i
	}
	i := l.newSlot()
	l.slots[id] = i
	return i
}

// newSlot adds an item without an id (the write lock is held).
func (l *Live) newSlot() int32 {
	l.counts = append(l.counts, 0)
	l.trend = append(l.trend, 0)
	l.co = append(l.co, nil)
	return int32(len(l.counts) - 1)
}

// Observe records that a user whose earlier items (oldest first) are given interacted with
// item at time t: the item's count and trending score grow, and it co-occurs with the user's
// last CoWindow earlier items. Ids need not belong to any catalog: a catalog loaded later
// finds their counts.
func (l *Live) Observe(item string, t time.Time, earlier []string) {
	if len(earlier) > l.cfg.CoWindow {
		earlier = earlier[len(earlier)-l.cfg.CoWindow:]
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i := l.slot(item)
	l.observe(i, t)
	for _, id := range earlier {
		if id != item {
			l.addCo(i, l.slot(id))
		}
	}
	l.version.Add(1)
}

// observe counts one interaction with slot i at t (the write lock is held).
func (l *Live) observe(i int32, t time.Time) {
	l.counts[i]++
	if l.epoch.IsZero() {
		l.epoch = t
	}
	e := float64(t.Sub(l.epoch)) / float64(l.cfg.HalfLife)
	if e > 60 { // keep the scores finite: move the epoch to t and rescale
		scale := math.Exp2(-e)
		for j := range l.trend {
			l.trend[j] *= scale
		}
		l.epoch, e = t, 0
	}
	l.trend[i] += math.Exp2(e)
}

func (l *Live) addCo(i, j int32) {
	for _, p := range [2][2]int32{{i, j}, {j, i}} {
		if l.co[p[0]] == nil {
			l.co[p[0]] = map[int32]float32{}
		}
		l.co[p[0]][p[1]]++
	}
}

// Count is the number of interactions observed with item id.
func (l *Live) Count(id string) float64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if i, ok := l.slots[id]; ok {
		return l.counts[i]
	}
	return 0
}

// TrendFeature is each row's live trend as log(1 + n * share) (n rows, share its part of the
// rows' summed trending scores): 0 for an item no one chose lately, log 2 for one with a
// uniform share, larger for what is being chosen now; all 0 before any live interaction. The
// online learner weighs it (engine/online.Learner.SetFeature). The vector is computed once per
// change of the statistics and shared: callers must not modify it.
func (s *Stats) TrendFeature() []float32 {
	c := s.trendFeat.Load()
	if c == nil || c.version != s.live.version.Load() {
		c = s.trendFeature()
		s.trendFeat.Store(c)
	}
	return c.feat
}

// trendFeature computes TrendFeature's vector (linear in the catalog, once per Live change).
func (s *Stats) trendFeature() *trendCache {
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	c := &trendCache{version: s.live.version.Load(), feat: make([]float32, len(s.slot))}
	var total float64
	for _, i := range s.slot {
		total += s.live.trend[i]
	}
	if total == 0 {
		return c
	}
	n := float64(len(s.slot))
	for r, i := range s.slot {
		c.feat[r] = float32(math.Log1p(n * s.live.trend[i] / total))
	}
	return c
}

// CoOccurrence is the number of users (within the window) who had both items.
func (l *Live) CoOccurrence(a, b string) float64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	i, ok1 := l.slots[a]
	j, ok2 := l.slots[b]
	if !ok1 || !ok2 {
		return 0
	}
	return float64(l.co[i][j])
}

// Bind returns the view of the catalog ids (ids[row] is the item of catalog row row) with
// cfg's propensity settings and no seed counts. Binding is linear in len(ids).
func (l *Live) Bind(ids []string, cfg Config) *Stats {
	l.mu.Lock()
	slot := make([]int32, len(ids))
	for r, id := range ids {
		slot[r] = l.slot(id)
	}
	l.mu.Unlock()
	return l.view(slot, cfg)
}

func (l *Live) view(slot []int32, cfg Config) *Stats {
	cfg = cfg.withDefaults()
	cfg.HalfLife, cfg.CoWindow = l.cfg.HalfLife, l.cfg.CoWindow
	return &Stats{live: l, cfg: cfg, slot: slot, seed: make([]float64, len(slot))}
}

// Stats are the live statistics of a catalog of n items (rows 0..n-1): a view of a Live with
// the catalog's seed counts. Safe for concurrent use.
type Stats struct {
	live *Live
	cfg  Config
	slot []int32 // row -> the Live's slot

	mu        sync.Mutex // held by Seed and while the cache is rebuilt
	seed      []float64
	seedTotal float64
	seeds     atomic.Uint64 // grows with every Seed
	cache     atomic.Pointer[propCache]
	trendFeat atomic.Pointer[trendCache]
}

// propCache is a view's propensity state as of a Live version and a seed generation; it is
// replaced, never modified, so readers need no lock.
// trendCache is TrendFeature's vector as of a Live version.
type trendCache struct {
	version uint64
	feat    []float32
}

type propCache struct {
	version, seeds uint64
	total          float64   // seeds and live counts of the catalog's items
	logProps       []float64 // log p_i by row
}

// New returns empty statistics for n items of their own: a view of a fresh Live whose items
// have no ids.
func New(n int, cfg Config) *Stats {
	l := NewLive(cfg)
	slot := make([]int32, n)
	l.mu.Lock()
	for r := range slot {
		slot[r] = l.newSlot()
	}
	l.mu.Unlock()
	return l.view(slot, cfg)
}

// Config returns the estimator settings (defaults filled in; HalfLife and CoWindow are the
// Live's).
func (s *Stats) Config() Config { return s.cfg }

// Live is the id-keyed statistics the view reads.
func (s *Stats) Live() *Live { return s.live }

// Len is the number of items.
func (s *Stats) Len() int { return len(s.slot) }

// Observe records that a user with the given earlier items (catalog rows, oldest first)
// interacted with item at time t: Live.Observe by row.
func (s *Stats) Observe(item int, t time.Time, earlier []int) error {
	if item < 0 || item >= len(s.slot) {
		return fmt.Errorf("popularity: item %d out of range [0,%d)", item, len(s.slot))
	}
	if len(earlier) > s.cfg.CoWindow {
		earlier = earlier[len(earlier)-s.cfg.CoWindow:]
	}
	l := s.live
	l.mu.Lock()
	defer l.mu.Unlock()
	i := s.slot[item]
	l.observe(i, t)
	for _, r := range earlier {
		if r != item && r >= 0 && r < len(s.slot) {
			l.addCo(i, s.slot[r])
		}
	}
	l.version.Add(1)
	return nil
}

// Count is item i's number of interactions: its seed and what the Live observed.
func (s *Stats) Count(i int) float64 {
	if i < 0 || i >= len(s.slot) {
		return 0 // outside the bound catalog: an item added to a live catalog
	}
	s.mu.Lock()
	seed := s.seed[i]
	s.mu.Unlock()
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	return seed + s.live.counts[s.slot[i]]
}

// Propensity is the smoothed, clipped share of the catalog's interactions that item i has.
func (s *Stats) Propensity(i int) float64 {
	return s.propensity(s.Count(i), s.current().total)
}

func (s *Stats) propensity(count, total float64) float64 {
	n := float64(len(s.slot))
	p := (count + s.cfg.Smoothing) / (total + s.cfg.Smoothing*n)
	return max(p, s.cfg.ClipMin)
}

// LogPropensityOf is log p of an item with count interactions against the catalog's current
// total: what an item outside the bound rows (one added to a live catalog) is reweighted by.
func (s *Stats) LogPropensityOf(count float64) float64 {
	return math.Log(s.propensity(count, s.current().total))
}

// Seed adds earlier data to item i's count (the training interactions a bundle ships). Seeds
// belong to this view: other catalogs bound to the same Live do not see them. It does not
// touch trending or co-occurrence.
func (s *Stats) Seed(i int, count float64) {
	if count <= 0 || i < 0 || i >= len(s.slot) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seed[i] += count
	s.seedTotal += count
	s.seeds.Add(1)
}

// current returns the propensity cache, rebuilt when the seeds or the Live changed since it
// was built: linear in the catalog, once per change; otherwise two atomic loads.
func (s *Stats) current() *propCache {
	if c := s.cache.Load(); c != nil && c.version == s.live.version.Load() && c.seeds == s.seeds.Load() {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	c := &propCache{version: s.live.version.Load(), seeds: s.seeds.Load(), total: s.seedTotal,
		logProps: make([]float64, len(s.slot))}
	for _, i := range s.slot {
		c.total += s.live.counts[i]
	}
	for r, i := range s.slot {
		c.logProps[r] = math.Log(s.propensity(s.seed[r]+s.live.counts[i], c.total))
	}
	s.cache.Store(c)
	return c
}

// logPropensities returns log p_i for every item by row; the slice must not be modified.
func (s *Stats) logPropensities() []float64 { return s.current().logProps }

// ReweightAll is Reweight for every item: scores[i] belongs to item i.
func (s *Stats) ReweightAll(scores []float32, alpha float64) {
	if alpha == 0 {
		return
	}
	lp := s.logPropensities()
	// in blocks with github.com/viterin/vek's vector kernels (plain Go where the CPU lacks
	// AVX2): the same float64 products, float32 roundings and float32 differences as
	// scores[i] -= float32(alpha * lp[i]), a third of that loop's time at 100,000 items
	var prod [reweightBlock]float64
	var term [reweightBlock]float32
	for lo := 0; lo < len(scores); lo += reweightBlock {
		hi := min(lo+reweightBlock, len(scores))
		p := vek.MulNumber_Into(prod[:hi-lo], lp[lo:hi], alpha)
		vek32.Sub_Inplace(scores[lo:hi], vek32.FromFloat64_Into(term[:hi-lo], p))
	}
}

// reweightBlock is how many scores ReweightAll takes at once (on the stack).
const reweightBlock = 512

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

// Trending returns the top k items (rows) by decayed recent popularity, highest first.
func (s *Stats) Trending(k int) []int {
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	trend := s.live.trend
	idx := make([]int, 0, len(s.slot))
	for r, i := range s.slot {
		if trend[i] > 0 {
			idx = append(idx, r)
		}
	}
	slices.SortFunc(idx, func(a, b int) int {
		ta, tb := trend[s.slot[a]], trend[s.slot[b]]
		if ta != tb {
			if ta > tb {
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

// CoOccurrence is the number of users (within the window) who had both i and j (rows); 0 for
// a row outside the bound catalog (an item added to a live catalog).
func (s *Stats) CoOccurrence(i, j int) float64 {
	if i < 0 || j < 0 || i >= len(s.slot) || j >= len(s.slot) {
		return 0
	}
	s.live.mu.RLock()
	defer s.live.mu.RUnlock()
	return float64(s.live.co[s.slot[i]][s.slot[j]])
}
