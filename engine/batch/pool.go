package batch

import (
	"context"
	"errors"
	"time"

	"github.com/llm4rec/llm4rec/engine/ort"
)

// Pool batches requests for several replicas of one graph (sessions of the same file), each
// with its own Batcher: a request goes to the replica with the fewest requests accepted and
// not yet answered (ties: the first), so one caller always uses the first replica and
// concurrent callers spread over all. A session runs one batch at a time on the thread that
// calls it; replicas let a graph that a load is waiting on (the text encoder, when every
// request carries a new query) run on as many cores as there are replicas, where one session
// with more intra-op threads gains less (docs/ARCHITECTURE.md). It is safe for concurrent use.
type Pool struct {
	bs []*Batcher
}

// NewPool starts one Batcher with cfg over each runner. Close stops them.
func NewPool(runners []Runner, cfg Config) (*Pool, error) {
	if len(runners) == 0 {
		return nil, errors.New("batch: a pool needs at least one runner")
	}
	p := &Pool{bs: make([]*Batcher, len(runners))}
	for i, r := range runners {
		p.bs[i] = New(r, cfg)
	}
	return p, nil
}

// Replicas is the number of replicas.
func (p *Pool) Replicas() int { return len(p.bs) }

// pick is the replica with the fewest requests waiting, the first among equals.
func (p *Pool) pick() *Batcher {
	best := p.bs[0]
	n := best.waiting.Load()
	for _, b := range p.bs[1:] {
		if w := b.waiting.Load(); w < n {
			best, n = b, w
		}
	}
	return best
}

// Submit is Batcher.Submit on the least loaded replica.
func (p *Pool) Submit(ctx context.Context, inputs []ort.Tensor) ([]ort.Tensor, error) {
	return p.pick().SubmitInto(ctx, inputs, nil)
}

// SubmitInto is Batcher.SubmitInto on the least loaded replica.
func (p *Pool) SubmitInto(ctx context.Context, inputs []ort.Tensor, out *Outputs) ([]ort.Tensor, error) {
	return p.pick().SubmitInto(ctx, inputs, out)
}

// ExpectedWait is the expected wait of a request submitted now: that of the replica it would
// go to.
func (p *Pool) ExpectedWait() time.Duration { return p.pick().ExpectedWait() }

// QueueDepth is the number of requests waiting to be batched, over all replicas.
func (p *Pool) QueueDepth() int {
	n := 0
	for _, b := range p.bs {
		n += b.QueueDepth()
	}
	return n
}

// Close closes every replica's Batcher (each runs what it accepted). It is idempotent.
func (p *Pool) Close() error {
	var errs []error
	for _, b := range p.bs {
		errs = append(errs, b.Close())
	}
	return errors.Join(errs...)
}
