package recommend

import (
	"context"
	"slices"
	"testing"

	"github.com/llm4rec/llm4rec/engine/online"
)

// The online learner's correction enters Recommend with the request's fused user state: after
// learning, Recommend's list is Engine.TopK of LearnerInputs' log-probabilities plus
// Learner().Add of its state (what the online bench scores with), and an item the user did not
// get is pulled into the list by the interactions the learner takes.
func TestLearnerCorrectionInRecommend(t *testing.T) {
	testEngine(t) // opens the shared runtime
	e, err := Open(testBundle(t), rt, Config{Online: online.Config{Rate: 0.5, ResidualRate: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	lr := e.Learner()
	if lr == nil || lr.Dim() != e.dim {
		t.Fatalf("learner %v: want one reading the %d-value user state", lr, e.dim)
	}
	ctx := context.Background()
	hist := []string{e.items[3].ID, e.items[10].ID, e.items[42].ID}
	zero := 0.0
	list := func() []string {
		resp, err := e.Recommend(ctx, Request{History: hist, K: 10, ExcludeSeen: true, Alpha: &zero})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, it := range resp.Items {
			out = append(out, it.ItemID)
		}
		return out
	}
	state, lp, err := e.LearnerInputs(ctx, hist)
	if err != nil {
		t.Fatal(err)
	}
	if len(state) != e.dim || len(lp) != len(e.items) {
		t.Fatalf("inputs of %d and %d values", len(state), len(lp))
	}
	before := list()
	// an item far down the user's list
	seen := make([]bool, len(e.items))
	for _, id := range hist {
		seen[e.byID[id]] = true
	}
	order := e.TopK(lp, seen, 200)
	target := order[len(order)-1]
	if slices.Contains(before, e.items[target].ID) {
		t.Fatalf("item %s already listed", e.items[target].ID)
	}
	for i := 0; i < 30; i++ {
		if err := lr.Update(state, lp, target); err != nil {
			t.Fatal(err)
		}
	}
	after := list()
	if !slices.Contains(after, e.items[target].ID) {
		t.Fatalf("after 30 updates towards %s the list is %v", e.items[target].ID, after)
	}
	score := slices.Clone(lp)
	lr.Add(state, score)
	var fromInputs []string
	for _, r := range e.TopK(score, seen, 10) {
		fromInputs = append(fromInputs, e.items[r].ID)
	}
	if !slices.Equal(fromInputs, after) {
		t.Errorf("TopK(LearnerInputs + correction) %v, Recommend %v", fromInputs, after)
	}
	// the residual is what moved it for this state: biases alone give a different score
	bias := slices.Clone(lp)
	lr.Add(nil, bias)
	if bias[target] == score[target] {
		t.Error("the residual added nothing for the user's state")
	}
}
