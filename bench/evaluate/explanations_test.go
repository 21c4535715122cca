package evaluate

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/llm4rec/llm4rec/bench/report"
	"github.com/llm4rec/llm4rec/engine/ort"
	"github.com/llm4rec/llm4rec/engine/recommend"
	"github.com/llm4rec/llm4rec/eval"
)

// The counterfactual comparison: ranks skip the history items left out (no longer excluded,
// they may enter the list), an item out of the list ranks worse, a tie does not.
func TestCounterfactualRank(t *testing.T) {
	list := []int{7, 3, 9, 4}
	for _, c := range []struct {
		row  int
		left []int
		want int
	}{{7, nil, 1}, {9, nil, 3}, {5, nil, 0}, {9, []int{3}, 2}, {4, []int{7, 3}, 2}, {3, []int{3}, 0}} {
		if got := counterfactualRank(list, c.row, c.left...); got != c.want {
			t.Errorf("counterfactualRank(%v, %d, %v) = %d, want %d", list, c.row, c.left, got, c.want)
		}
	}
	for _, c := range []struct {
		rank, without int
		want          bool
	}{{2, 3, true}, {2, 0, true}, {2, 2, false}, {2, 1, false}, {0, 5, false}, {0, 0, false}} {
		if got := movedDown(c.rank, c.without); got != c.want {
			t.Errorf("movedDown(%d, %d) = %v, want %v", c.rank, c.without, got, c.want)
		}
	}
	// the full request's long list left out of consideration: its place in the served list
	if got := rankBefore([]int{1, 2}, []int{2, 8}, 8); got != 2 {
		t.Errorf("rankBefore fallback = %d", got)
	}
	if got := rankBefore([]int{1, 8, 2}, []int{2, 8}, 8); got != 2 {
		t.Errorf("rankBefore = %d", got)
	}

	// The previous rule: the most co-occurring history item from 2 users, else the closest in
	// content from cosine 0.3, the item itself never cited.
	co := map[[2]int]float64{{1, 9}: 1, {2, 9}: 3, {3, 9}: 3, {9, 9}: 10}
	cos := map[[2]int]float32{{1, 9}: 0.5, {2, 9}: 0.2, {3, 9}: 0.1, {4, 9}: 0.35}
	coF := func(a, b int) float64 { return co[[2]int{a, b}] }
	cosF := func(a, b int) float32 { return cos[[2]int{a, b}] }
	if got := previousCitation([]int{9, 1, 2, 3}, 9, coF, cosF); got != 2 {
		t.Errorf("by co-occurrence: %d, want 2 (the first of the most)", got)
	}
	if got := previousCitation([]int{1, 4}, 9, coF, cosF); got != 1 {
		t.Errorf("by content: %d, want 1", got)
	}
	if got := previousCitation([]int{3}, 9, func(int, int) float64 { return 1 }, cosF); got != -1 {
		t.Errorf("below both thresholds: %d, want -1", got)
	}
	u := unitRows([]float32{3, 4, 0, 0}, 2)
	if u[0] != 0.6 || u[1] != 0.8 || u[2] != 0 || u[3] != 0 {
		t.Errorf("unit rows %v", u)
	}
}

// The section encodes under its names and prints in the quality report.
func TestExplanationsReportOutputs(t *testing.T) {
	f, g := 0.9, 0.4
	rep := &QualityReport{Run: report.Run{Kind: "quality"}, Bundle: "b", Timings: map[string]float64{},
		Explanations: &ExplanationsReport{Evidence: "leave_one_out", Users: 2, Items: 20, Cited: 10, Faithful: 9, Faithfulness: &f, PreviousRuleCited: 20,
			PreviousRuleFaithful: 8, PreviousRuleFaithfulness: &g, QueryTemplate: "recommend me a {c} {noun}", QueryItems: 20,
			QueryMovedItems: 5, QueryNamedShare: &f, QueryMentionedShare: &g, GeneralShare: 0.25,
			FirstKindCounts: map[string]int{"general": 5, "similarity": 15}, FirstTemplateCounts: map[string]int{"general": 5},
			LatencyRequests: 2, LatencyP50MsWithout: 10, LatencyP50MsWith: 11.5, LatencyP99MsWithout: 12, LatencyP99MsWith: 14,
			P50Increase: 0.15, P50IncreaseTarget: ExplainLatencyTarget}}
	var b strings.Builder
	if err := rep.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"explanations, leave_one_out evidence: 2 users", "previous rule", "0.9000", "0.4000", "similarity 15", "+15.0%, within"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, b.String())
		}
	}
	dir := t.TempDir()
	if _, err := rep.WriteJSON(dir); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join(dir, QualityJSON))
	if err != nil {
		t.Fatal(err)
	}
	var back struct {
		Explanations map[string]any `json:"explanations"`
	}
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"evidence", "users", "cited", "faithful", "faithfulness", "previous_rule_cited", "previous_rule_faithfulness",
		"query_moved_items", "query_named_share", "query_mentioned_share", "general_share", "first_kind_counts",
		"latency_p50_ms_without", "latency_p50_ms_with", "latency_p99_ms_without", "latency_p99_ms_with", "p50_increase"} {
		if _, ok := back.Explanations[k]; !ok {
			t.Errorf("quality.json's explanations lack %q: %v", k, back.Explanations)
		}
	}
}

// RunExplanations through the engine on the test bundle, 20 users: the section is filled, the
// measured explanations cite something and are at least as faithful as the previous rule.
func TestExplanationsOnBundle(t *testing.T) {
	dir := evalBundle(t)
	data := testData(t)
	env, err := openEnv(dir, data, ort.Options{Provider: ort.ProviderCPU}, recommend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	rep, err := RunExplanations(context.Background(), env, env.Users, 20, 8, nil)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.writeTable(&b)
	t.Logf("\n%s", b.String())
	if rep.Users != 20 || rep.Items != 20*eval.K || rep.LatencyRequests != 20 {
		t.Fatalf("users %d, items %d, latency requests %d", rep.Users, rep.Items, rep.LatencyRequests)
	}
	if rep.Cited == 0 || rep.Faithfulness == nil || rep.PreviousRuleFaithfulness == nil {
		t.Fatalf("nothing cited: %+v", rep)
	}
	for name, v := range map[string]float64{"faithfulness": *rep.Faithfulness, "previous rule": *rep.PreviousRuleFaithfulness,
		"general share": rep.GeneralShare} {
		if v < 0 || v > 1 {
			t.Errorf("%s %v outside [0, 1]", name, v)
		}
	}
	if *rep.Faithfulness < *rep.PreviousRuleFaithfulness {
		t.Errorf("measured explanations less faithful (%.4f) than the previous rule (%.4f)", *rep.Faithfulness, *rep.PreviousRuleFaithfulness)
	}
	kinds := 0
	for _, n := range rep.FirstKindCounts {
		kinds += n
	}
	if kinds != rep.Items {
		t.Errorf("first kinds %v count %d items, want %d", rep.FirstKindCounts, kinds, rep.Items)
	}
	if env.Engine.Manifest().Steering != nil && (rep.QueryItems != 20*eval.K || rep.QueryMentionedShare == nil) {
		t.Errorf("query figures: %d items, mentioned %v", rep.QueryItems, rep.QueryMentionedShare)
	}
	if rep.LatencyP50MsWithout <= 0 || rep.LatencyP50MsWith <= 0 || rep.LatencyP99MsWith < rep.LatencyP50MsWith {
		t.Errorf("latency %+v", rep)
	}
}

// The attention section beside the served one: a second engine with the other evidence
// strategy, measured on the same users.
func TestExplanationsWithAttentionEvidence(t *testing.T) {
	dir := evalBundle(t)
	env, err := openEnv(dir, testData(t), ort.Options{Provider: ort.ProviderCPU}, recommend.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer env.Close()
	rep, err := explanationsWith(context.Background(), env, QualityConfig{Bundle: dir, ExplainUsers: 10, Workers: 4}, env.Users,
		recommend.EvidenceAttention)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Evidence != recommend.EvidenceAttention || env.Engine.ExplainEvidence() != recommend.EvidenceLeaveOneOut || rep.Users != 10 || rep.Cited == 0 {
		t.Fatalf("attention section: evidence %q (served %q), %d users, %d cited", rep.Evidence, env.Engine.ExplainEvidence(), rep.Users, rep.Cited)
	}
}
