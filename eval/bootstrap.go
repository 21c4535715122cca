package eval

import (
	"math/rand/v2"
	"slices"
)

// PairedBootstrap is a 95% interval of mean(a) - mean(b) over paired events (2000
// resamples).
func PairedBootstrap(a, b []bool, seed uint64) [2]float64 {
	d := make([]float64, len(a))
	for i := range a {
		if a[i] {
			d[i]++
		}
		if b[i] {
			d[i]--
		}
	}
	return meanInterval(d, seed)
}

// PairedMeanDiff is mean(a) - mean(b) over paired observations (a[i] with b[i]) with its
// bootstrap 95% interval (2000 resamples of the pairs, nearest rank).
func PairedMeanDiff(a, b []float64, seed uint64) (float64, [2]float64) {
	n := len(a)
	if n == 0 {
		return 0, [2]float64{}
	}
	d := make([]float64, n)
	var total float64
	for i := range a {
		d[i] = a[i] - b[i]
		total += d[i]
	}
	return total / float64(n), meanInterval(d, seed)
}

// meanInterval is the bootstrap 95% interval of the mean of d: 2000 resamples with
// replacement, nearest rank (the 50th and the 1950th of the sorted means); zero for no data.
func meanInterval(d []float64, seed uint64) [2]float64 {
	n := len(d)
	if n == 0 {
		return [2]float64{}
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
	return [2]float64{means[49], means[1949]}
}
