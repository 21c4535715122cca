package evaluate

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/eval"
)

// Conditions of the group calibration comparison.
const (
	CondAlpha0     = "alpha 0"
	CondDefault    = "default"
	CondCalibrated = "group calibrated"
)

// GroupCalibrationReport is group-calibrated popularity correction for one user attribute,
// measured through the engine: each group's strength (the manifest's ips.group_alpha when the
// bundle has it, else chosen here on the users' validation items by the export's rule,
// eval.ChooseGroupAlphas), then on test items every user ranked at their group's strength
// (users of other groups at the default) against no correction and the default, on the same
// users.
type GroupCalibrationReport struct {
	// Source is "manifest" or "validation" (chosen here).
	Source string             `json:"source"`
	Alpha  map[string]float64 `json:"alpha"`
	// NDCG and ARP are the test figures of all evaluated users by condition (CondAlpha0,
	// CondDefault, CondCalibrated).
	NDCG map[string]float64 `json:"ndcg@10"`
	ARP  map[string]float64 `json:"arp"`
	// Calibrated and Default compare the NDCG@10 gap between the two largest groups under the
	// calibrated strengths and under the default with the gap under no correction.
	Calibrated *eval.GapChange `json:"calibrated_vs_alpha0"`
	Default    *eval.GapChange `json:"default_vs_alpha0"`
}

// RunGroupCalibration measures group calibration for the attributes the users have (gender,
// age band), choosing strengths from grid (whose first is 0; RunQuality uses
// eval.CalibrationAlphas, the export's) where the manifest has none. testTops holds the test
// lists already computed by strength and receives those it computes.
func RunGroupCalibration(ctx context.Context, env *eval.Env, users []eval.SplitUser, defaultAlpha float64, grid []float64,
	manifest map[string]map[string]float64, testTops map[float64][][]int, workers int, progress io.Writer) (map[string]*GroupCalibrationReport, error) {
	attrs := map[string][]string{"gender": make([]string, len(users)), "age": make([]string, len(users))}
	for i, u := range users {
		attrs["gender"][i], attrs["age"][i] = u.Gender, u.AgeBand
	}
	eng, items := env.Engine, env.Engine.Items()
	tops := func(alpha float64) ([][]int, error) {
		if t, ok := testTops[alpha]; ok {
			return t, nil
		}
		t, err := eval.EngineTops(ctx, eng, users, alpha, workers)
		testTops[alpha] = t
		return t, err
	}
	var valNDCG [][]float64 // by eval.CalibrationAlphas, computed once when an attribute needs it
	out := map[string]*GroupCalibrationReport{}
	for _, attr := range slices.Sorted(maps.Keys(attrs)) {
		group := attrs[attr]
		rep := &GroupCalibrationReport{Source: "manifest", Alpha: manifest[attr]}
		if len(rep.Alpha) == 0 {
			if valNDCG == nil {
				t0 := time.Now()
				targets := make([]int, len(users))
				for i, u := range users {
					targets[i] = u.Val
				}
				for _, a := range grid {
					vt, err := eval.Lists(ctx, eng, len(users), workers, func(i int) recommend.Request {
						return eval.Request(items, users[i].Train, a)
					})
					if err != nil {
						return nil, err
					}
					nd, _ := eval.PerUser(vt, targets, env.Popularity)
					valNDCG = append(valNDCG, nd)
				}
				report.Progressf(progress, "quality: group calibration: validation lists at %d strengths in %.1fs",
					len(grid), time.Since(t0).Seconds())
			}
			rep.Source = "validation"
			rep.Alpha = eval.ChooseGroupAlphas(grid, valNDCG, group, eval.MaxGroupCost, eval.MinGroupUsers)
		}
		if len(rep.Alpha) < 2 {
			continue // fewer than two groups large enough: nothing to compare
		}
		perUser := func(alphaOf func(u int) float64) (ndcg, arp []float64, err error) {
			ndcg, arp = make([]float64, len(users)), make([]float64, len(users))
			for u := range users {
				t, err := tops(alphaOf(u))
				if err != nil {
					return nil, nil, err
				}
				n, a := eval.PerUser(t[u:u+1], []int{users[u].Test}, env.Popularity)
				ndcg[u], arp[u] = n[0], a[0]
			}
			return ndcg, arp, nil
		}
		conds := map[string]func(u int) float64{
			CondAlpha0:  func(int) float64 { return 0 },
			CondDefault: func(int) float64 { return defaultAlpha },
			CondCalibrated: func(u int) float64 {
				if a, ok := rep.Alpha[group[u]]; ok {
					return a
				}
				return defaultAlpha
			},
		}
		rep.NDCG, rep.ARP = map[string]float64{}, map[string]float64{}
		nd := map[string][]float64{}
		for name, f := range conds {
			n, a, err := perUser(f)
			if err != nil {
				return nil, fmt.Errorf("group calibration: %w", err)
			}
			nd[name] = n
			rep.NDCG[name], rep.ARP[name] = nanMean(n), nanMean(a)
		}
		rep.Calibrated = eval.CompareGaps(nd[CondAlpha0], nd[CondCalibrated], group, eval.GroupSeed, eval.Resamples)
		rep.Default = eval.CompareGaps(nd[CondAlpha0], nd[CondDefault], group, eval.GroupSeed, eval.Resamples)
		out[attr] = rep
	}
	return out, nil
}

func nanMean(x []float64) float64 {
	var s float64
	var n int
	for _, v := range x {
		if v == v {
			s += v
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return s / float64(n)
}
