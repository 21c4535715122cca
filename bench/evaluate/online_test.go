package evaluate

import (
	"context"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/popularity"
	"github.com/llm4rec/llm4rec/server/feedback"
	"github.com/llm4rec/llm4rec/server/live"
)

// resolveCutoff is the export's data.resolve_cutoff (export/tests/test_temporal.py pins that
// one): a fraction names the timestamp at floor(fraction * n) of the sorted log.
func TestResolveCutoff(t *testing.T) {
	times := []int64{50, 10, 40, 20, 30, 30, 60, 70, 80, 90}
	for _, c := range []struct {
		until string
		want  int64
	}{{"0.8", 80}, {"0.5", 50}, {"0.25", 30}, {"0.05", 10}, {"65", 65}, {"1000", 1000}} {
		got, err := resolveCutoff(times, c.until)
		if err != nil || got != c.want {
			t.Errorf("cutoff %s: %d, %v; want %d", c.until, got, err, c.want)
		}
	}
	for _, bad := range []string{"0", "-1", "1.5", "abc", "NaN"} {
		if _, err := resolveCutoff(times, bad); err == nil {
			t.Errorf("cutoff %q accepted", bad)
		}
	}
}

func TestGapClosed(t *testing.T) {
	// online closes half of the gap between live state and the upper bound
	lv := []float64{0, 0, 0, 0}
	on := []float64{1, 0, 0, 0}
	up := []float64{1, 1, 0, 0}
	g, ci2, ok := gapClosed(on, lv, up, 1)
	if !ok || g != 0.5 || ci2[0] > g || ci2[1] < g {
		t.Errorf("gap %v %v %v", g, ci2, ok)
	}
	if _, _, ok := gapClosed(on, up, lv, 1); ok {
		t.Error("a negative gap was reported as closed")
	}
}

// memLog feeds live.State.CatchUp as the server's store does: each event once, in order.
func TestMemLogCatchUp(t *testing.T) {
	l := &memLog{}
	st := live.New(popularity.Config{})
	at := time.Unix(1e9, 0)
	l.append(feedback.Event{EventID: "1", UserID: "u", ItemID: "a", Type: "rating", Timestamp: at})
	l.append(feedback.Event{EventID: "2", UserID: "u", ItemID: "b", Type: "rating", Timestamp: at.Add(time.Second)})
	if n, err := st.CatchUp(l); n != 2 || err != nil {
		t.Fatalf("caught up %d: %v", n, err)
	}
	l.append(feedback.Event{EventID: "3", UserID: "u", ItemID: "c", Type: "rating", Timestamp: at.Add(2 * time.Second)})
	if n, _ := st.CatchUp(l); n != 1 {
		t.Fatalf("second catch-up applied %d, want 1", n)
	}
	if h := st.HistoryBefore("u", at.Add(2*time.Second), 0); strings.Join(h, ",") != "a,b" {
		t.Errorf("history before the third event %v", h)
	}
}

func TestOnlineReportOutputs(t *testing.T) {
	g, ci := 0.6, [2]float64{0.2, 0.9}
	rep := &OnlineReport{Run: report.Run{Kind: "online"}, Bundle: "b", Timings: map[string]float64{}, Window: 2,
		Modes: map[string]ModeResult{ModeFrozen: {Events: 4, Hits: 1, HR: 0.25, NDCG: 0.1}, ModeLiveState: {Events: 4, HR: 0.5, NDCG: 0.2},
			ModeOnline: {Events: 4, HR: 0.75, NDCG: 0.3}, ModeRetrained: {Events: 4, HR: 0.75, NDCG: 0.35}},
		Differences: map[string]Difference{"online-live_state": {0.1, [2]float64{0.01, 0.2}}},
		GapClosed:   &g, GapClosedCI95: &ci, RollingX: []int{2, 3, 4},
		Rolling: map[string][]float64{ModeFrozen: {0.1, 0.1, 0.1}, ModeOnline: {0.2, 0.3, 0.3}}}
	rep.Targets.GapClosed = true
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"live_state", "0.3000", "gap closed", "0.60 [0.20, 0.90]", "forgetting", "effect latency"} {
		if !strings.Contains(sb.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, sb.String())
		}
	}
	dir := t.TempDir()
	if _, err := rep.WriteJSON(dir); err != nil {
		t.Fatal(err)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, OnlineJSON))
	var back struct {
		Modes map[string]map[string]float64 `json:"modes"`
	}
	if err := json.Unmarshal(raw, &back); err != nil || back.Modes["online"]["ndcg@10"] != 0.3 || back.Modes["frozen"]["hr@10"] != 0.25 {
		t.Errorf("JSON modes.<mode>.ndcg@10: %v %+v", err, back.Modes)
	}
	if paths, err := rep.WritePlots(dir); err != nil || len(paths) != 1 {
		t.Errorf("plots %v %v", paths, err)
	}
}

// TestOnlineStream streams 300 events after the 80% cutoff through the engines. The default
// bundle saw those events in training, so only the mechanics are checked: the live state
// reproduces the data's histories, the learner takes every event, a checkpoint of the same
// weights scores exactly as live state, and the frozen mode, blind to the stream, differs.
func TestOnlineStream(t *testing.T) {
	dir := evalBundle(t)
	data := testData(t)
	if _, err := RunOnline(context.Background(), OnlineConfig{Bundle: dir, Data: data, Events: 10,
		Runtime: ort.Options{Provider: ort.ProviderCPU}}); err == nil || !strings.Contains(err.Error(), "train_until") {
		t.Fatalf("a bundle without a cutoff and no --until: %v", err)
	}
	rep, err := RunOnline(context.Background(), OnlineConfig{Bundle: dir, Data: data, Until: "0.8", Events: 300, ValUsers: 60,
		Window: 100, Retrained: []Checkpoint{{Bundle: dir, From: 889300000}},
		Runtime: ort.Options{Provider: ort.ProviderCPU}})
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	if err := rep.WriteTable(&sb); err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", sb.String())
	s := rep.Stream
	if s.Cutoff != 889237269 || s.Before != 79999 || s.After != 20001 || s.Events != 300 {
		t.Errorf("stream %+v: want the 80%% cutoff of MovieLens-100K", s)
	}
	if s.HistoryMismatches != 0 {
		t.Errorf("%d events' live-state histories differ from the data", s.HistoryMismatches)
	}
	if s.NotInCatalog != 0 || rep.Learner.Updates != 300 {
		t.Errorf("%d events outside the catalog, %d updates", s.NotInCatalog, rep.Learner.Updates)
	}
	for _, md := range OnlineModes {
		r, ok := rep.Modes[md]
		if !ok || r.Events != 300 || r.HR < 0 || r.HR > 1 || r.NDCG > r.HR {
			t.Errorf("mode %s: %+v", md, r)
		}
	}
	if d := rep.Differences["retrained-live_state"]; d.NDCG != 0 {
		t.Errorf("a checkpoint of the same weights differs from live state by %v", d.NDCG)
	}
	if len(rep.Checkpoints) != 1 || rep.Checkpoints[0].Events == 0 || rep.Checkpoints[0].Events >= 300 {
		t.Errorf("checkpoints %+v", rep.Checkpoints)
	}
	if rep.Modes[ModeFrozen] == rep.Modes[ModeLiveState] {
		t.Error("frozen and live state score alike: the stream did not reach the live state")
	}
	if rep.Learner.MaxResidual <= 0 || rep.Learner.Dim == 0 {
		t.Errorf("learner %+v: the residuals did not move", rep.Learner)
	}
	if f := rep.ForgettingDetail; f.Users != 60 || f.Before <= 0 || math.IsNaN(f.Relative) {
		t.Errorf("forgetting %+v", f)
	}
	if rep.EffectLatencyP99Ms <= 0 || rep.EffectLatencyP99Ms < rep.EffectLatencyP50Ms {
		t.Errorf("effect latency p50 %v p99 %v", rep.EffectLatencyP50Ms, rep.EffectLatencyP99Ms)
	}
	if len(rep.RollingX) == 0 || len(rep.Rolling[ModeOnline]) != len(rep.RollingX) || rep.RollingX[len(rep.RollingX)-1] != 300 {
		t.Errorf("rolling x %v", rep.RollingX)
	}
}
