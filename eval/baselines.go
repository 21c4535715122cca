package eval

import (
	"cmp"
	"math"
	"slices"
)

// TrainCounts is each catalog row's number of training interactions (evaluate.py popularity).
func TrainCounts(users []SplitUser, n int) []float64 {
	c := make([]float64, n)
	for _, u := range users {
		for _, r := range u.Train {
			c[r]++
		}
	}
	return c
}

// Popularity is the training popularity of the metrics' ARP: counts over the number of
// users (every user of the split, at least 1).
func Popularity(counts []float64, users int) []float64 {
	pop := make([]float64, len(counts))
	for i, c := range counts {
		pop[i] = c / float64(max(users, 1))
	}
	return pop
}

// MostPopular is the most-popular baseline's lists: training counts, the user's history
// excluded, ties by the lower row.
func MostPopular(users []SplitUser, counts []float64, k int) [][]int {
	return Tops(users, len(counts), k, func(_ int, out []float64) { copy(out, counts) })
}

// ItemKNN is the export's item-kNN baseline (evaluate.py itemknn_scores): the cosine
// similarity of items' training user vectors, shrunk (co / (|a||b| + shrink)), keeping per
// item the similarities at least as high as its neighbours-th highest; a user's score for
// item i is the sum of i's similarities to the distinct items of the history. Similarities
// are float32 as numpy computes them.
type ItemKNN struct {
	n int
	// simT[j*n+i] is item i's kept similarity to item j, so that one history item adds a
	// contiguous row.
	simT []float32
}

// NewItemKNN builds the model from the training rows of every user (neighbours 100, shrink 10
// in the export).
func NewItemKNN(train [][]int, n, neighbours int, shrink float32) *ItemKNN {
	co := make([]float32, n*n)
	for _, s := range train {
		u := distinct(s)
		for _, a := range u {
			row := co[a*n:]
			for _, b := range u {
				row[b]++
			}
		}
	}
	norm := make([]float32, n)
	for i := range norm {
		norm[i] = float32(math.Sqrt(float64(co[i*n+i])))
	}
	sim := co // overwritten row by row: co[i][j] is read only for computing sim[i][j]
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			den := float32(norm[i]*norm[j]) + shrink
			den = float32(den + 1e-9)
			sim[i*n+j] = float32(co[i*n+j] / den)
		}
		sim[i*n+i] = 0
	}
	if neighbours < n {
		buf := make([]float32, n)
		for i := 0; i < n; i++ {
			row := sim[i*n : (i+1)*n]
			copy(buf, row)
			slices.SortFunc(buf, func(a, b float32) int { return -cmp.Compare(a, b) })
			thr := buf[neighbours-1]
			for j, v := range row {
				if v < thr {
					row[j] = 0
				}
			}
		}
	}
	m := &ItemKNN{n: n, simT: make([]float32, n*n)}
	for i := 0; i < n; i++ {
		for j := 0; j < n; j++ {
			m.simT[j*n+i] = sim[i*n+j]
		}
	}
	return m
}

// NewItemKNNOf builds the export's item-kNN (100 neighbours, shrink 10) from every user's
// training rows.
func NewItemKNNOf(users []SplitUser, n int) *ItemKNN {
	train := make([][]int, len(users))
	for i, u := range users {
		train[i] = u.Train
	}
	return NewItemKNN(train, n, 100, 10)
}

// Scores writes into out (length n) the user's score of every item.
func (m *ItemKNN) Scores(history []int, out []float64) {
	clear(out)
	for _, j := range distinct(history) {
		for i, v := range m.simT[j*m.n : (j+1)*m.n] {
			out[i] += float64(v)
		}
	}
}

// Tops is the baseline's lists for users (their TestHistory scored and excluded).
func (m *ItemKNN) Tops(users []SplitUser, k int) [][]int {
	return Tops(users, m.n, k, func(u int, out []float64) { m.Scores(users[u].TestHistory(), out) })
}

func distinct(rows []int) []int {
	u := slices.Clone(rows)
	slices.Sort(u)
	return slices.Compact(u)
}
