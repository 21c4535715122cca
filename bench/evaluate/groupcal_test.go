package evaluate

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/eval"
)

// TestGroupCalibrationOnBundle runs the section through the engine on the test bundle for 240
// users: strengths chosen on validation come from the grid; with strengths given (as a
// manifest's ips.group_alpha), each user's calibrated NDCG@10 is the one of their group's
// strength, so the condition's mean is assembled from the per-strength lists.
func TestGroupCalibrationOnBundle(t *testing.T) {
	env, err := openEnv(evalBundle(t), testData(t), ort.Options{Provider: ort.ProviderCPU}, recommend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	users := env.Users[:240]
	grid := []float64{0, 0.5, 2}
	ctx := context.Background()
	tops := map[float64][][]int{}
	rep, err := RunGroupCalibration(ctx, env, users, 0.5, grid, nil, tops, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	g := rep["gender"]
	if g == nil || g.Source != "validation" || len(g.Alpha) != 2 || g.Calibrated == nil || g.Calibrated.Pair != "F-M" {
		t.Fatalf("gender: %+v", g)
	}
	for n, a := range g.Alpha {
		if a != 0 && a != 0.5 && a != 2 {
			t.Errorf("%s: strength %g is not on the grid", n, a)
		}
	}
	// given strengths: F at 2, M at 0
	tops = map[float64][][]int{}
	rep, err = RunGroupCalibration(ctx, env, users, 0.5, grid, map[string]map[string]float64{"gender": {"F": 2, "M": 0}}, tops, 16, nil)
	if err != nil {
		t.Fatal(err)
	}
	g = rep["gender"]
	if g.Source != "manifest" {
		t.Fatalf("source %q", g.Source)
	}
	targets := make([]int, len(users))
	for i, u := range users {
		targets[i] = u.Test
	}
	at := func(a float64) []float64 { n, _ := eval.PerUser(tops[a], targets, env.Popularity); return n }
	n0, n2, nd := at(0), at(2), at(0.5)
	var want, w0, wd float64
	for u, us := range users {
		x := n0[u]
		switch us.Gender {
		case "F":
			x = n2[u]
		case "":
			x = nd[u]
		}
		want += x
		w0 += n0[u]
		wd += nd[u]
	}
	k := float64(len(users))
	for name, w := range map[string]float64{CondCalibrated: want / k, CondAlpha0: w0 / k, CondDefault: wd / k} {
		if math.Abs(g.NDCG[name]-w) > 1e-12 {
			t.Errorf("%s: NDCG@10 %.6f, want %.6f", name, g.NDCG[name], w)
		}
	}
	if g.ARP[CondCalibrated] >= g.ARP[CondAlpha0] {
		t.Errorf("F at strength 2 must lower the popularity shown: %v", g.ARP)
	}
	var b strings.Builder
	(&QualityReport{GroupCalibration: rep}).writeGroupCalibration(&b)
	if !strings.Contains(b.String(), "F 2, M 0 (manifest)") || !strings.Contains(b.String(), CondCalibrated) {
		t.Errorf("table:\n%s", b.String())
	}
	t.Logf("\n%s", b.String())
}
