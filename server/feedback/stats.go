package feedback

import (
	"slices"
	"sync/atomic"
	"time"
)

// Stats is a point-in-time copy of a store's counters, for metrics. Counters start at zero
// when the Store is opened; they are not persisted.
type Stats struct {
	// Appended counts events stored; Duplicates counts events skipped because their EventID
	// was already stored with the same content.
	Appended   uint64
	Duplicates uint64
	// Conflicts counts Append calls refused with ErrConflict.
	Conflicts uint64
	// Commits counts write transactions of Append that committed, each with one fsync.
	// Appended / Commits is the mean number of events per group commit.
	Commits uint64
	// CommitLatency times each such transaction from its first write to its durable commit
	// (building the group, writing pages, fsync).
	CommitLatency Histogram
	// AckLatency times each successful Append from its call to its return: the delay a
	// client sees, waiting for a group to form included.
	AckLatency Histogram
	// LastSeq is the highest sequence number committed.
	LastSeq uint64
	// Healthy is false after a write failure or Close; see Store.Err.
	Healthy bool
}

// Histogram counts durations into fixed buckets. Counts[i] counts observations no longer
// than Bounds[i] and longer than Bounds[i-1]; the last element of Counts, one more than
// Bounds, counts those longer than every bound. Counts are per bucket, not cumulative.
type Histogram struct {
	Bounds []time.Duration
	Counts []uint64
	Count  uint64
	Sum    time.Duration
}

// Mean is Sum/Count, or 0 without observations.
func (h Histogram) Mean() time.Duration {
	if h.Count == 0 {
		return 0
	}
	return h.Sum / time.Duration(h.Count)
}

// Quantile returns the upper bound of the bucket that holds the q-th quantile (0 < q <= 1),
// an overestimate by at most one bucket. Observations above every bound report the last
// bound doubled. Without observations it returns 0.
func (h Histogram) Quantile(q float64) time.Duration {
	if h.Count == 0 || len(h.Bounds) == 0 {
		return 0
	}
	rank := uint64(q*float64(h.Count) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.Counts {
		seen += c
		if seen >= rank {
			if i < len(h.Bounds) {
				return h.Bounds[i]
			}
			break
		}
	}
	return 2 * h.Bounds[len(h.Bounds)-1]
}

// latencyBounds are the histogram buckets: from a quarter millisecond (a fast fsync) to one
// second (a disk in trouble).
var latencyBounds = []time.Duration{
	250 * time.Microsecond, 500 * time.Microsecond, time.Millisecond, 2 * time.Millisecond,
	5 * time.Millisecond, 10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
}

// histogram is the lock-free recorder behind Histogram.
type histogram struct {
	counts [13]atomic.Uint64 // len(latencyBounds)+1
	count  atomic.Uint64
	sum    atomic.Int64
}

func (h *histogram) observe(d time.Duration) {
	i := 0
	for i < len(latencyBounds) && d > latencyBounds[i] {
		i++
	}
	h.counts[i].Add(1)
	h.count.Add(1)
	h.sum.Add(int64(d))
}

func (h *histogram) snapshot() Histogram {
	out := Histogram{Bounds: slices.Clone(latencyBounds), Counts: make([]uint64, len(h.counts))}
	for i := range h.counts {
		out.Counts[i] = h.counts[i].Load()
		out.Count += out.Counts[i]
	}
	out.Sum = time.Duration(h.sum.Load())
	return out
}
