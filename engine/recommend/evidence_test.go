package recommend

import (
	"context"
	"slices"
	"testing"

	"github.com/llm4rec/llm4rec/engine/explain"
)

// placeOf is the 1-based place of id in the list, or len(list)+1 when absent.
func placeOf(resp *Response, id string) int {
	for i, it := range resp.Items {
		if it.ItemID == id {
			return i + 1
		}
	}
	return len(resp.Items) + 1
}

// Every history item an explanation cites moves the item down when it is left out of the
// history (a counterfactual run through the public API), and the query is cited for items it
// moved up; an item without such evidence gets the general sentence.
func TestCitedEvidenceMovesTheItem(t *testing.T) {
	e := testEngine(t)
	zero := 0.0
	ctx := context.Background()
	cited, general := 0, 0
	for u := 0; u < 6; u++ {
		var hist []string
		for j := 0; j < 12; j++ {
			hist = append(hist, e.items[(u*97+j*31)%len(e.items)].ID)
		}
		req := Request{History: hist, K: 10, ExcludeSeen: true, Alpha: &zero, ExplainDetail: true}
		if u%2 == 1 {
			req.Query = "a comedy"
		}
		resp, err := e.Recommend(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range resp.Items {
			if len(it.Explanations) == 0 || len(it.Explanations) > 3 {
				t.Fatalf("%s: %d explanations", it.ItemID, len(it.Explanations))
			}
			for _, x := range it.Explanations {
				var without Request
				switch {
				case x.Kind == explain.General:
					general++
					continue
				case x.Kind == explain.Similarity:
					without = req
					without.History = slices.DeleteFunc(slices.Clone(hist), func(id string) bool { return id == x.Evidence[0] })
				case x.Kind == explain.Context && x.Evidence[0] == "query":
					without = req
					without.Query = ""
				default:
					continue
				}
				cited++
				without.K, without.ExplainDetail = e.cfg.MaxK, false
				cf, err := e.Recommend(ctx, without)
				if err != nil {
					t.Fatal(err)
				}
				before := placeOf(resp, it.ItemID)
				if after := placeOf(cf, it.ItemID); after <= before || x.Values["score_drop"] < explain.DefaultMinDrop {
					t.Errorf("%s cites %v (%s) but leaving it out keeps it at %d (was %d; drop %v)", it.ItemID, x.Evidence, x.Template, after, before, x.Values["score_drop"])
				}
			}
		}
	}
	if cited == 0 {
		t.Fatal("no evidence cited in 60 recommendations")
	}
	t.Logf("%d pieces of evidence cited and checked; %d general sentences", cited, general)
}

// The probes are the newest ExplainProbes distinct history items, then each modality sent.
func TestProbesAreTheNewestDistinctItems(t *testing.T) {
	e := testEngine(t)
	m := modalities{emb: make([][]float32, len(e.manifest.Fusion.Modalities)), names: e.manifest.Fusion.Modalities}
	m.emb[0] = make([]float32, e.dim)
	hist := []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 9, 10}
	ps := e.probes(hist, m)
	var rows []int
	for _, p := range ps {
		if p.source == explain.FromHistory {
			rows = append(rows, p.row)
		}
	}
	if !slices.Equal(rows, []int{10, 9, 8, 7, 6, 5, 4, 3}) || ps[len(ps)-1].source != explain.FromQuery || len(ps) != 9 {
		t.Fatalf("probes %+v", ps)
	}
}
