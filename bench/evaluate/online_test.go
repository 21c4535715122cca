package evaluate

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/eval"

	"github.com/llm4rec/llm4rec/bench/report"
)

func TestOnlineConfigValidation(t *testing.T) {
	for _, s := range []eval.LearnerSetting{{Rate: 2, Penalty: 0.5}, {Rate: 1, Penalty: 1}} {
		if err := (OnlineConfig{Rate: s.Rate, Penalty: s.Penalty}).withDefaults().validate(); err == nil {
			t.Errorf("rate %g penalty %g accepted: the bias scale would be <= 0", s.Rate, s.Penalty)
		}
	}
	cfg := OnlineConfig{Sweep: DefaultOnlineSweep()}.withDefaults()
	if err := cfg.validate(); err != nil || cfg.Rate != ServerOnlineRate || cfg.Penalty != ServerOnlinePenalty {
		t.Errorf("defaults %+v: %v", cfg, err)
	}
}

func TestOnlineReportOutputs(t *testing.T) {
	rep := &OnlineReport{Run: report.Run{Kind: "online"}, Bundle: "b", Engine: eval.ReplayResult{Events: 4, HitsWith: 2, HitsWithout: 1, ValUsers: 4},
		CurveWith: []int{0, 1, 1, 2}, CurveWithout: []int{0, 0, 1, 1}, Timings: map[string]float64{},
		Sweep: []OnlinePoint{{LearnerSetting: eval.LearnerSetting{Rate: 0.1, Penalty: 0.01}}}}
	rep.Engine.Finish()
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
		t.Errorf("setting %+v: want the server's", r.LearnerSetting)
	}
	if rep.Agree < r.Events*99/100 {
		t.Errorf("%s", rep.Agreement)
	}
}
