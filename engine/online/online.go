// Package online is the engine's small online-learned component: a per-item score bias added
// to the generator's log-probabilities, updated by SGD from the feedback stream without
// retraining the graphs. An L2 penalty pulls every bias back towards 0 (the exported model),
// so the learner adapts to what is happening now without drifting away from, and forgetting,
// what the exported model knows.
package online

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"
	"sync"

	"github.com/llm4rec/llm4rec/engine/ranking"
)

// The learner's defaults, the one place they are written (the server's configuration and the
// online bench take them from here).
const (
	DefaultRate       = 0.05
	DefaultPenalty    = 0.01
	DefaultCandidates = 100
	DefaultMaxBias    = 5
)

// Config sets the learner. Zero fields take the defaults.
type Config struct {
	// Rate is the SGD step size (default 0.05).
	Rate float64
	// Penalty is the L2 pull towards the exported model per update (default 0.01): each
	// update scales every bias by (1 - Rate*Penalty).
	Penalty float64
	// Candidates is how many of the highest-probability items get the softmax gradient's
	// negative part (default 100); the rest have negligible probability.
	Candidates int
	// MaxBias bounds |bias| (default 5), so no single stream can dominate the model's scores.
	MaxBias float64
}

func (c Config) withDefaults() Config {
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.Penalty <= 0 {
		c.Penalty = DefaultPenalty
	}
	if c.Candidates <= 0 {
		c.Candidates = DefaultCandidates
	}
	if c.MaxBias <= 0 {
		c.MaxBias = DefaultMaxBias
	}
	return c
}

// Bias is the learned per-item bias. Safe for concurrent use.
type Bias struct {
	cfg Config

	mu      sync.RWMutex
	b       []float32
	scale   float64 // lazy L2 decay: the true bias is b[i]*scale
	updates uint64
}

// NewBias returns zero biases for n items. A Rate*Penalty of 1 or more would wipe or flip
// every bias at each update; it is capped at 0.5.
func NewBias(n int, cfg Config) *Bias {
	cfg = cfg.withDefaults()
	if cfg.Rate*cfg.Penalty > 0.5 {
		cfg.Penalty = 0.5 / cfg.Rate
	}
	return &Bias{cfg: cfg, b: make([]float32, n), scale: 1}
}

// Len is the number of items.
func (a *Bias) Len() int { return len(a.b) }

// Updates is the number of updates applied.
func (a *Bias) Updates() uint64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return a.updates
}

// Add adds the biases to scores (scores[i] belongs to item i).
func (a *Bias) Add(scores []float32) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	s := float32(a.scale)
	for i := range scores {
		scores[i] += a.b[i] * s
	}
}

// Value is item i's bias.
func (a *Bias) Value(i int) float64 {
	a.mu.RLock()
	defer a.mu.RUnlock()
	return float64(a.b[i]) * a.scale
}

// Update takes one observed interaction: logProbs are the model's log-probabilities over all
// items for the user just before the interaction (biases not included) and target is the item
// the user chose. It takes one SGD step on -log softmax(logProbs + bias)[target] with the L2
// penalty.
func (a *Bias) Update(logProbs []float32, target int) error {
	if len(logProbs) != len(a.b) || target < 0 || target >= len(a.b) {
		return fmt.Errorf("online: update with %d scores for %d items, target %d", len(logProbs), len(a.b), target)
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	// penalty: b <- b * (1 - rate*penalty), applied lazily through scale
	a.scale *= 1 - a.cfg.Rate*a.cfg.Penalty
	if a.scale < 1e-3 {
		for i := range a.b {
			a.b[i] *= float32(a.scale)
		}
		a.scale = 1
	}
	// softmax over the candidates with the current biases
	k := min(a.cfg.Candidates, len(a.b))
	cand := topK(logProbs, a.b, a.scale, k, target)
	mx := math.Inf(-1)
	z := make([]float64, len(cand))
	for j, i := range cand {
		z[j] = float64(logProbs[i]) + float64(a.b[i])*a.scale
		mx = max(mx, z[j])
	}
	var sum float64
	for j := range z {
		z[j] = math.Exp(z[j] - mx)
		sum += z[j]
	}
	lim := a.cfg.MaxBias
	for j, i := range cand {
		g := z[j] / sum // d(-log p_target)/d b_i = p_i - [i == target]
		if i == target {
			g--
		}
		v := float64(a.b[i])*a.scale - a.cfg.Rate*g
		v = math.Max(-lim, math.Min(lim, v))
		a.b[i] = float32(v / a.scale)
	}
	a.updates++
	return nil
}

// topK returns the k items with the highest biased score, the target always among them.
func topK(lp, b []float32, scale float64, k, target int) []int {
	out := ranking.TopKBy(len(lp), func(i int) float32 { return lp[i] + b[i]*float32(scale) }, nil, k)
	if !slices.Contains(out, target) {
		out = append(out, target)
	}
	return out
}

// MarshalBinary snapshots the biases (for the feedback store's snapshots).
func (a *Bias) MarshalBinary() ([]byte, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	out := make([]byte, 16+4*len(a.b))
	binary.LittleEndian.PutUint64(out, uint64(len(a.b)))
	binary.LittleEndian.PutUint64(out[8:], a.updates)
	for i, v := range a.b {
		binary.LittleEndian.PutUint32(out[16+4*i:], math.Float32bits(v*float32(a.scale)))
	}
	return out, nil
}

// UnmarshalBinary restores a snapshot taken for the same number of items.
func (a *Bias) UnmarshalBinary(data []byte) error {
	if len(data) < 16 || uint64(len(data)-16) != 4*binary.LittleEndian.Uint64(data) || int(binary.LittleEndian.Uint64(data)) != len(a.b) {
		return fmt.Errorf("online: snapshot does not hold %d item biases", len(a.b))
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.updates = binary.LittleEndian.Uint64(data[8:])
	a.scale = 1
	for i := range a.b {
		a.b[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[16+4*i:]))
	}
	return nil
}
