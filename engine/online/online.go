// Package online is the engine's online-learned component: a correction of the generator's
// output layer learned from the feedback stream without retraining the graphs. Each item i
// has a bias b_i and a residual vector u_i over the fused user state s (the fusion graph's
// user_state output, taken at unit length), and the served score of item i is
//
//	log p_model(i | history) + b_i + u_i . s/|s| + beta * f_i
//
// that is, a residual dW = [u_i] and db = [b_i] on the output layer, read against the state
// the graphs already compute, and one weight beta shared by every item on the item's live
// trend f_i (SetFeature: what is being chosen now), so that every interaction teaches
// something about every item. All are trained by SGD on the softmax cross-entropy of each
// observed interaction over the highest-scoring candidates (the rest have negligible
// probability), interleaved with steps on interactions drawn from a bounded replay buffer of
// earlier ones, and pulled back towards the shipped weights (dW = 0, db = 0, beta = 0) by an
// L2 anchor at every step, so that the learner follows what is happening now without
// drifting away from, and forgetting, what the exported model knows. A learner made with
// dimension 0 has no residuals.
package online

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas/blas32"

	"github.com/llm4rec/llm4rec/engine/ranking"
)

// The learner's defaults, the one place they are written (the server's configuration and the
// online bench take them from here). Rate, ResidualRate and Penalty were chosen by
// `llm4rec bench online --sweep` on a tuning period (the 5,001 MovieLens-100K interactions
// after a bundle's 80% cutoff, before the 85% point): the best NDCG@10 there among the settings
// whose forgetting stayed under 1%.
const (
	DefaultRate         = 0.02
	DefaultPenalty      = 0.01
	DefaultCandidates   = 100
	DefaultMaxBias      = 5
	DefaultResidualRate = 0.03
	DefaultReplay       = 4096
	DefaultReplaySteps  = 1
	DefaultTrendRate    = 0.2
)

// Config sets the learner. Zero fields take the defaults.
type Config struct {
	// Rate is the SGD step size of the biases (default 0.02).
	Rate float64
	// Penalty is the L2 anchor to the shipped weights per step (default 0.01): each step
	// scales every bias and residual by (1 - Rate*Penalty).
	Penalty float64
	// ResidualRate is the SGD step size of the residual vectors (default 0.03; the state they
	// multiply has unit length, so a step moves an item's score by at most ResidualRate times
	// its gradient). Negative: no residuals, biases only.
	ResidualRate float64
	// Candidates is how many of the highest-scoring items get the softmax gradient's negative
	// part (default 100); the rest have negligible probability.
	Candidates int
	// MaxBias bounds |b_i| and |u_i| (default 5), so no single stream can dominate the
	// model's scores.
	MaxBias float64
	// Replay is how many earlier interactions the replay buffer keeps (default 4096; negative:
	// none). Each entry holds the unit state, the candidates and their model log-probabilities:
	// about (D + 2*Candidates) * 4 bytes.
	Replay int
	// ReplaySteps is how many buffered interactions are replayed after each new one (default 1).
	ReplaySteps int
	// Seed drives the choice of replayed interactions (default 1).
	Seed uint64
	// TrendRate is the SGD step size of the weight on the items' live trend (SetFeature), a
	// parameter shared by every item, so it learns from every interaction what items that are
	// being chosen now have in common; 0: the default (DefaultTrendRate), negative: no trend
	// weight.
	TrendRate float64
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.Penalty <= 0 {
		c.Penalty = DefaultPenalty
	}
	if c.ResidualRate == 0 {
		c.ResidualRate = DefaultResidualRate
	}
	if c.Candidates <= 0 {
		c.Candidates = DefaultCandidates
	}
	if c.MaxBias <= 0 {
		c.MaxBias = DefaultMaxBias
	}
	if c.Replay == 0 {
		c.Replay = DefaultReplay
	}
	if c.ReplaySteps <= 0 {
		c.ReplaySteps = DefaultReplaySteps
	}
	if c.Seed == 0 {
		c.Seed = 1
	}
	if c.TrendRate == 0 {
		c.TrendRate = DefaultTrendRate
	}
	return c
}

// example is one interaction as the learner saw it: the unit state, the candidates (the target
// among them) and their model log-probabilities.
type example struct {
	x      []float32
	cand   []int32
	lp     []float32
	feat   []float32 // the candidates' trend feature when seen (nil without one)
	target int32
}

// Learner is the online-learned output-layer correction. Safe for concurrent use.
type Learner struct {
	cfg Config
	n   int
	dim int // 0: biases only

	mu      sync.RWMutex
	b       []float32
	u       []float32 // [n, dim]
	active  []int32   // rows whose residual is not all zero, in first-touched order
	isAct   []bool
	scale   float64 // lazy L2 anchor: the true parameters are stored*scale
	updates uint64
	buf     []example // replay buffer (ring)
	next    int
	rng     *rand.Rand

	// the trend weight: score_i += beta * feature_i (SetFeature); beta is stored as it is,
	// anchored at each step like the rest
	beta    float64
	feature func() []float32
}

// SetFeature gives the learner each item's live trend feature (fn returns one value per item,
// read only, never modified; a constant vector changes no ranking), which the trend weight
// multiplies. Without one, or with a negative TrendRate, there is no trend weight.
func (l *Learner) SetFeature(fn func() []float32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cfg.TrendRate > 0 {
		l.feature = fn
	}
}

// Beta is the learned trend weight.
func (l *Learner) Beta() float64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.beta
}

// features returns the feature vector (read only), nil without one.
func (l *Learner) features() []float32 {
	if l.feature == nil {
		return nil
	}
	return l.feature()
}

// New returns a learner for n items and user states of dim values, all parameters 0 (the
// shipped model). dim 0 (or a negative ResidualRate) gives biases only. A Rate*Penalty of 1 or
// more would wipe or flip every parameter at each step; it is capped at 0.5.
func New(n, dim int, cfg Config) *Learner {
	cfg = cfg.withDefaults()
	if cfg.Rate*cfg.Penalty > 0.5 {
		cfg.Penalty = 0.5 / cfg.Rate
	}
	if cfg.ResidualRate < 0 {
		dim = 0
	}
	l := &Learner{cfg: cfg, n: n, dim: dim, b: make([]float32, n), scale: 1,
		rng: rand.New(rand.NewPCG(cfg.Seed, 0x6f6e6c696e65))}
	if dim > 0 {
		l.u = make([]float32, n*dim)
		l.isAct = make([]bool, n)
	}
	return l
}

// Len is the number of items.
func (l *Learner) Len() int { return l.n }

// Dim is the length of the user states the residuals read (0: biases only).
func (l *Learner) Dim() int { return l.dim }

// Config is the learner's configuration with its defaults filled in.
func (l *Learner) Config() Config { return l.cfg }

// Updates is the number of observed interactions learned from (replayed steps not counted).
func (l *Learner) Updates() uint64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return l.updates
}

// unit returns state at unit length, nil when it is absent, of the wrong length or zero: the
// residuals then contribute nothing.
func (l *Learner) unit(state []float32) []float32 {
	return l.unitInto(state, nil)
}

// unitInto is unit written into dst when it has room (else into a new array).
func (l *Learner) unitInto(state, dst []float32) []float32 {
	if l.dim == 0 || len(state) != l.dim {
		return nil
	}
	var ss float64
	for _, v := range state {
		ss += float64(v) * float64(v)
	}
	if ss == 0 || math.IsNaN(ss) || math.IsInf(ss, 0) {
		return nil
	}
	inv := float32(1 / math.Sqrt(ss))
	x := dst[:0]
	if cap(x) < len(state) {
		x = make([]float32, len(state))
	}
	x = x[:len(state)]
	for i, v := range state {
		x[i] = v * inv
	}
	return x
}

// Add adds each item's correction for a user with this fused state (nil: biases only) to
// scores (scores[i] belongs to item i). It costs O(n + active*dim).
func (l *Learner) Add(state []float32, scores []float32) {
	l.add(state, scores, nil, true)
}

// AddAt is Add with the trend feature given (one value per item, as SetFeature's function
// returns it; nil: no trend term) instead of the live one: the correction as it would have been
// at another time, whose trend feat is.
func (l *Learner) AddAt(state, scores, feat []float32) {
	l.add(state, scores, feat, false)
}

func (l *Learner) add(state, scores, feat []float32, live bool) {
	var onStack [512]float32 // the unit state, read here only (a request's Add allocates nothing)
	x := l.unitInto(state, onStack[:])
	l.mu.RLock()
	defer l.mu.RUnlock()
	l.addLocked(x, scores)
	if l.beta == 0 || len(scores) != l.n {
		return
	}
	if live {
		feat = l.features()
	}
	b := float32(l.beta)
	for i, v := range feat[:min(len(feat), l.n)] {
		scores[i] += b * v
	}
}

func (l *Learner) addLocked(x []float32, scores []float32) {
	s := float32(l.scale)
	// scores += s b over the catalog, with gonum's vector kernel: the same products and sums
	// as the plain loop, a third of its time at 100,000 items
	n := min(len(scores), len(l.b))
	blas32.Axpy(s, blas32.Vector{N: n, Inc: 1, Data: l.b[:n]}, blas32.Vector{N: n, Inc: 1, Data: scores[:n]})
	if x == nil {
		return
	}
	for _, r := range l.active {
		scores[r] += dot(l.u[int(r)*l.dim:(int(r)+1)*l.dim], x) * s
	}
}

func dot(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return s0 + s1 + s2 + s3
}

// Value is item i's bias.
func (l *Learner) Value(i int) float64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	return float64(l.b[i]) * l.scale
}

// ResidualNorm is |u_i|, the length of item i's residual vector.
func (l *Learner) ResidualNorm(i int) float64 {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.dim == 0 {
		return 0
	}
	return math.Sqrt(float64(dot(l.u[i*l.dim:(i+1)*l.dim], l.u[i*l.dim:(i+1)*l.dim]))) * l.scale
}

// Update learns from one observed interaction: state is the user's fused state and logProbs
// the model's log-probabilities over all items (no correction included), both for the
// history just before the interaction, and target is the item chosen. It takes one SGD step
// on -log softmax(logProbs + correction)[target] over the candidates, stores the interaction
// in the replay buffer and takes ReplaySteps steps on earlier buffered ones, each step with
// the L2 anchor. state may be nil (bias step only).
func (l *Learner) Update(state, logProbs []float32, target int) error {
	if len(logProbs) != l.n || target < 0 || target >= l.n {
		return fmt.Errorf("online: update with %d scores for %d items, target %d", len(logProbs), l.n, target)
	}
	x := l.unit(state)
	l.mu.Lock()
	defer l.mu.Unlock()
	// candidates: the highest by current score, the target always among them
	score := slices.Clone(logProbs)
	l.addLocked(x, score)
	f := l.features()
	for i, v := range f {
		score[i] += float32(l.beta) * v
	}
	k := min(l.cfg.Candidates, l.n)
	cand := ranking.TopKBy(l.n, func(i int) float32 { return score[i] }, nil, k)
	if !slices.Contains(cand, target) {
		cand = append(cand, target)
	}
	ex := example{x: x, cand: make([]int32, len(cand)), lp: make([]float32, len(cand)), target: int32(target)}
	for j, i := range cand {
		ex.cand[j], ex.lp[j] = int32(i), logProbs[i]
	}
	if f != nil {
		ex.feat = make([]float32, len(cand))
		for j, i := range cand {
			ex.feat[j] = f[i]
		}
	}
	l.step(ex)
	// replay earlier interactions (drawn before this one joins the buffer)
	if len(l.buf) > 0 {
		for r := 0; r < l.cfg.ReplaySteps; r++ {
			l.step(l.buf[l.rng.IntN(len(l.buf))])
		}
	}
	if l.cfg.Replay > 0 {
		if len(l.buf) < l.cfg.Replay {
			l.buf = append(l.buf, ex)
		} else {
			l.buf[l.next] = ex
			l.next = (l.next + 1) % l.cfg.Replay
		}
	}
	l.updates++
	return nil
}

// step is one SGD step on one example with the anchor; the caller holds mu.
func (l *Learner) step(ex example) {
	// anchor: every parameter <- parameter * (1 - rate*penalty), lazily through scale
	l.scale *= 1 - l.cfg.Rate*l.cfg.Penalty
	if l.scale < 1e-3 {
		l.rescale()
	}
	sc := float32(l.scale)
	l.beta *= 1 - l.cfg.Rate*l.cfg.Penalty
	z := make([]float64, len(ex.cand))
	mx := math.Inf(-1)
	for j, c := range ex.cand {
		i := int(c)
		v := ex.lp[j] + l.b[i]*sc
		if ex.feat != nil {
			v += float32(l.beta) * ex.feat[j]
		}
		if ex.x != nil && l.isAct[i] {
			v += dot(l.u[i*l.dim:(i+1)*l.dim], ex.x) * sc
		}
		z[j] = float64(v)
		mx = max(mx, z[j])
	}
	var sum float64
	for j := range z {
		z[j] = math.Exp(z[j] - mx)
		sum += z[j]
	}
	lim := l.cfg.MaxBias
	rr := float32(l.cfg.ResidualRate)
	var gBeta float64
	for j, c := range ex.cand {
		i := int(c)
		g := z[j] / sum // d(-log p_target)/d score_i = p_i - [i == target]
		if c == ex.target {
			g--
		}
		if ex.feat != nil {
			gBeta += g * float64(ex.feat[j])
		}
		v := float64(l.b[i])*l.scale - l.cfg.Rate*g
		v = math.Max(-lim, math.Min(lim, v))
		l.b[i] = float32(v / l.scale)
		if ex.x == nil || g == 0 {
			continue
		}
		// u_i <- u_i - rr*g*x, stored divided by scale, its length bounded by MaxBias
		if !l.isAct[i] {
			l.isAct[i] = true
			l.active = append(l.active, int32(i))
		}
		u := l.u[i*l.dim : (i+1)*l.dim]
		d := -rr * float32(g) / sc
		for k, xv := range ex.x {
			u[k] += d * xv
		}
		if n := math.Sqrt(float64(dot(u, u))) * l.scale; n > lim {
			f := float32(lim / n)
			for k := range u {
				u[k] *= f
			}
		}
	}
	if ex.feat != nil {
		l.beta = math.Max(-lim, math.Min(lim, l.beta-l.cfg.TrendRate*gBeta))
	}
}

// rescale folds scale into the stored parameters; the caller holds mu.
func (l *Learner) rescale() {
	f := float32(l.scale)
	for i := range l.b {
		l.b[i] *= f
	}
	for _, r := range l.active {
		u := l.u[int(r)*l.dim : (int(r)+1)*l.dim]
		for k := range u {
			u[k] *= f
		}
	}
	l.scale = 1
}

// snapshotMagic starts a snapshot of biases, residuals and the trend weight; snapshotMagicV1
// one of biases and residuals (earlier versions: the trend weight restores as 0); a snapshot
// with neither is the biases-only layout of the first versions (item count, updates, biases),
// which restores the biases with zero residuals.
const (
	snapshotMagic   = "OLR2"
	snapshotMagicV1 = "OLR1"
)

// MarshalBinary snapshots the biases, residuals and trend weight (for the feedback store's
// snapshots): magic, items, dim, updates, n biases, n*dim residual values, then the trend
// weight (float64), little-endian. The replay buffer is not kept: a restored learner refills
// it from the interactions that follow.
func (l *Learner) MarshalBinary() ([]byte, error) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	out := make([]byte, 0, 28+4*(l.n+len(l.u)))
	out = append(out, snapshotMagic...)
	out = binary.LittleEndian.AppendUint64(out, uint64(l.n))
	out = binary.LittleEndian.AppendUint64(out, uint64(l.dim))
	out = binary.LittleEndian.AppendUint64(out, l.updates)
	s := float32(l.scale)
	for _, v := range l.b {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v*s))
	}
	for _, v := range l.u {
		out = binary.LittleEndian.AppendUint32(out, math.Float32bits(v*s))
	}
	return binary.LittleEndian.AppendUint64(out, math.Float64bits(l.beta)), nil
}

// UnmarshalBinary restores a snapshot taken for the same number of items and state length (or
// a biases-only snapshot of earlier versions for the same number of items). It checks before
// it changes anything: on an error the learner is as it was.
func (l *Learner) UnmarshalBinary(data []byte) error {
	var n, dim, updates uint64
	var body []byte
	beta := 0.0
	switch {
	case len(data) >= 28 && (string(data[:4]) == snapshotMagic || string(data[:4]) == snapshotMagicV1):
		n, dim, updates = binary.LittleEndian.Uint64(data[4:]), binary.LittleEndian.Uint64(data[12:]), binary.LittleEndian.Uint64(data[20:])
		body = data[28:]
		if string(data[:4]) == snapshotMagic {
			if len(body) < 8 {
				return fmt.Errorf("online: snapshot of %d bytes is truncated", len(data))
			}
			beta = math.Float64frombits(binary.LittleEndian.Uint64(body[len(body)-8:]))
			body = body[:len(body)-8]
			if math.IsNaN(beta) || math.IsInf(beta, 0) {
				return fmt.Errorf("online: snapshot holds a trend weight of %v", beta)
			}
		}
		if n != uint64(l.n) || dim != uint64(l.dim) || uint64(len(body)) != 4*n*(1+dim) {
			return fmt.Errorf("online: snapshot of %d items x %d state values (%d bytes) does not fit a learner of %d x %d",
				n, dim, len(data), l.n, l.dim)
		}
	case len(data) >= 16 && uint64(len(data)-16) == 4*binary.LittleEndian.Uint64(data) && binary.LittleEndian.Uint64(data) == uint64(l.n):
		n, updates, body = uint64(l.n), binary.LittleEndian.Uint64(data[8:]), data[16:]
	default:
		return fmt.Errorf("online: snapshot does not hold a learner of %d items", l.n)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.updates, l.scale, l.beta = updates, 1, beta
	for i := range l.b {
		l.b[i] = math.Float32frombits(binary.LittleEndian.Uint32(body[4*i:]))
	}
	l.active = l.active[:0]
	for i := range l.isAct {
		l.isAct[i] = false
	}
	for k := range l.u {
		l.u[k] = 0
	}
	if dim > 0 {
		res := body[4*n:]
		for k := range l.u {
			l.u[k] = math.Float32frombits(binary.LittleEndian.Uint32(res[4*k:]))
		}
		for i := 0; i < l.n; i++ {
			if slices.ContainsFunc(l.u[i*l.dim:(i+1)*l.dim], func(v float32) bool { return v != 0 }) {
				l.isAct[i] = true
				l.active = append(l.active, int32(i))
			}
		}
	}
	l.buf, l.next = nil, 0
	return nil
}
