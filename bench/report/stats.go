package report

import (
	"math"
	"slices"
	"time"
)

// Percentile returns the p-th percentile (0 <= p <= 100) of sorted values by the nearest-rank
// method: the smallest value such that at least p percent of the values are less than or
// equal to it. Percentile of an empty slice is 0; p <= 0 gives the minimum and p >= 100 the
// maximum. sorted must be in ascending order.
func Percentile(sorted []float64, p float64) float64 {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	if p <= 0 || math.IsNaN(p) {
		return sorted[0]
	}
	if p >= 100 {
		return sorted[n-1]
	}
	rank := int(math.Ceil(p / 100 * float64(n))) // 1-based
	return sorted[max(rank, 1)-1]
}

// Summary describes a set of latencies, in milliseconds.
type Summary struct {
	Count  int     `json:"count"`
	Mean   float64 `json:"mean_ms"`
	Stddev float64 `json:"stddev_ms"`
	Min    float64 `json:"min_ms"`
	P50    float64 `json:"p50_ms"`
	P90    float64 `json:"p90_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// Summarize computes the Summary of latencies (which it does not modify).
func Summarize(latencies []time.Duration) Summary {
	ms := make([]float64, len(latencies))
	for i, d := range latencies {
		ms[i] = float64(d) / float64(time.Millisecond)
	}
	return SummarizeMillis(ms)
}

// SummarizeMillis computes the Summary of values given in milliseconds; it sorts ms in place.
func SummarizeMillis(ms []float64) Summary {
	n := len(ms)
	if n == 0 {
		return Summary{}
	}
	slices.Sort(ms)
	var sum float64
	for _, v := range ms {
		sum += v
	}
	mean := sum / float64(n)
	var ss float64
	for _, v := range ms {
		ss += (v - mean) * (v - mean)
	}
	sd := 0.0
	if n > 1 {
		sd = math.Sqrt(ss / float64(n-1))
	}
	return Summary{Count: n, Mean: mean, Stddev: sd, Min: ms[0], P50: Percentile(ms, 50),
		P90: Percentile(ms, 90), P99: Percentile(ms, 99), Max: ms[n-1]}
}
