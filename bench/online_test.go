package bench

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/engine/ort"
)

func TestTimeOrder(t *testing.T) {
	targets := []int{4, -1, 7, 2}
	times := []int64{30, 10, 20, 20}
	ev := timeOrder(4, func(u int) (int, int64) { return targets[u], times[u] })
	var users []int
	for _, e := range ev {
		users = append(users, e.user)
	}
	if !slices.Equal(users, []int{2, 3, 0}) {
		t.Errorf("order %v: want by time, ties by user, user 1 (no target) left out", users)
	}
}

// A replay where every user picks the same item, ranked 16th by the model: without learning it
// never hits; the learner puts it in the top 10 after a few events.
func TestReplayLearnsARecurringItem(t *testing.T) {
	const n, users, target = 20, 30, 15
	lp := make([]float32, n)
	for i := range lp {
		lp[i] = -0.3 * float32(i)
	}
	spec := replaySpec{n: n, hist: func(int) []int { return nil }, earlierHist: func(int) []int { return []int{0} },
		earlier: func(int) int { return 1 }}
	for u := 0; u < users; u++ {
		spec.events = append(spec.events, replayEvent{user: u, target: target, time: int64(u)})
		spec.lp = append(spec.lp, lp)
		spec.earlierLP = append(spec.earlierLP, lp)
	}
	res, with := spec.run(OnlineSetting{Rate: 0.5, Penalty: 0.01}, 1)
	if res.Events != users || res.HitsWithout != 0 || res.HitsWith < users-5 || res.HitsWith != countHits(with) || with[0] {
		t.Errorf("replay %+v, hits %v", res, with)
	}
	if res.ValUsers != users || res.ValBefore != 1 || res.MaxBias <= 0 {
		t.Errorf("earlier set %+v", res)
	}
	if res.GainCI95[0] <= 0 {
		t.Errorf("gain interval %v: want above 0", res.GainCI95)
	}
	off, _ := spec.run(OnlineSetting{Rate: 1e-9, Penalty: 1}, 1)
	if off.HitsWith != 0 || off.Forgetting != 0 {
		t.Errorf("a negligible rate learned: %+v", off)
	}
}

func TestOnlineConfigValidation(t *testing.T) {
	for _, s := range []OnlineSetting{{2, 0.5}, {1, 1}} {
		if err := (OnlineConfig{Rate: s.Rate, Penalty: s.Penalty}).withDefaults().validate(); err == nil {
			t.Errorf("rate %g penalty %g accepted: the bias scale would be <= 0", s.Rate, s.Penalty)
		}
	}
	cfg := OnlineConfig{Sweep: DefaultOnlineSweep()}.withDefaults()
	if err := cfg.validate(); err != nil || cfg.Rate != ServerOnlineRate || cfg.Penalty != ServerOnlinePenalty {
		t.Errorf("defaults %+v: %v", cfg, err)
	}
}

func TestPairedBootstrap(t *testing.T) {
	a := []bool{true, true, true, true}
	b := []bool{false, false, false, false}
	if ci := pairedBootstrap(a, b, 1); ci != [2]float64{1, 1} {
		t.Errorf("all better: %v", ci)
	}
	if ci := pairedBootstrap(a, a, 1); ci != [2]float64{0, 0} {
		t.Errorf("identical: %v", ci)
	}
	ci := pairedBootstrap([]bool{true, false, true, false}, []bool{false, false, true, true}, 1)
	if ci[0] > 0 || ci[1] < 0 || ci[0] < -1 || ci[1] > 1 {
		t.Errorf("mixed: %v", ci)
	}
}

func TestOnlineReportOutputs(t *testing.T) {
	rep := &OnlineReport{Kind: "online", Bundle: "b", Engine: OnlineResult{Events: 4, HitsWith: 2, HitsWithout: 1, ValUsers: 4},
		CurveWith: []int{0, 1, 1, 2}, CurveWithout: []int{0, 0, 1, 1}, Timings: map[string]float64{},
		Sweep: []OnlinePoint{{OnlineSetting: OnlineSetting{0.1, 0.01}}}}
	rep.Engine.finish()
	rep.Chosen = &rep.Sweep[0]
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"prequential HR@10 (4 events)", "+0.2500", "forgetting", "chosen"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
	dir := t.TempDir()
	if _, err := rep.WriteJSON(dir); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, OnlineJSON))
	var back OnlineReport
	if err := json.Unmarshal(raw, &back); err != nil || back.Engine.Gain != 0.25 {
		t.Errorf("JSON round trip: %v %+v", err, back.Engine)
	}
	if paths, err := rep.WritePlots(dir); err != nil || len(paths) != 1 {
		t.Errorf("plots %v %v", paths, err)
	}
}

// TestOnlineReplay runs the replay through the engine for the first 300 users: the engine's
// replay and the learner-only one must agree event by event.
func TestOnlineReplay(t *testing.T) {
	dir := evalBundle(t)
	data := testData(t)
	if testing.Short() {
		t.Skip("short mode: the online replay takes about 10 s")
	}
	rep, err := RunOnline(context.Background(), OnlineConfig{Bundle: dir, Data: data, Users: 300,
		Runtime: ort.Options{Provider: ort.ProviderCPU}})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sb.String())
	r := rep.Engine
	if r.Events != 300 || r.ValUsers != 300 || len(rep.CurveWith) != 300 || r.MaxBias <= 0 {
		t.Errorf("replay %+v", r)
	}
	if r.Rate != ServerOnlineRate || r.Penalty != ServerOnlinePenalty {
		t.Errorf("setting %+v: want the server's", r.OnlineSetting)
	}
	if rep.Agree < r.Events*99/100 {
		t.Errorf("%s", rep.Agreement)
	}
}
