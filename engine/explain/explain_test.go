package explain

import (
	"reflect"
	"strings"
	"testing"
)

type fakeCatalog struct {
	items []Item
	sim   map[[2]int]float32
}

func (f fakeCatalog) Item(i int) Item { return f.items[i] }
func (f fakeCatalog) Similarity(a, b int) float32 {
	if s, ok := f.sim[[2]int{a, b}]; ok {
		return s
	}
	return f.sim[[2]int{b, a}]
}

type fakeSignals struct {
	co       map[[2]int]float64
	trending []int
}

func (f fakeSignals) CoOccurrence(a, b int) float64 { return f.co[[2]int{a, b}] }
func (f fakeSignals) Trending(k int) []int          { return f.trending[:min(k, len(f.trending))] }

func catalog() fakeCatalog {
	return fakeCatalog{items: []Item{
		{"1", "Toy Story (1995)", []string{"Animation", "Children's", "Comedy"}},
		{"2", "GoldenEye (1995)", []string{"Action", "Adventure", "Thriller"}},
		{"3", "Aladdin (1992)", []string{"Animation", "Children's", "Comedy", "Musical"}},
		{"4", "Heat (1995)", []string{"Action", "Crime", "Thriller"}},
		{"5", "Fargo (1996)", []string{"Crime", "Drama", "Thriller"}},
		{"6", "Jaws (1975)", []string{"Action", "Horror"}},
	}, sim: map[[2]int]float32{{0, 2}: 0.8, {1, 3}: 0.5, {0, 4}: 0.1, {2, 5}: 0.1}}
}

func explainer(t *testing.T, s Signals) *Explainer {
	e, err := New(catalog(), s, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func hist(row int, drop float64, rank, without int) Evidence {
	return Evidence{Source: FromHistory, Row: row, Drop: drop, Rank: rank, RankWithout: without}
}

// Every kind, in its order: cited modalities first, then cited history items by the score
// they moved, then shared preference, then trending.
func TestDetailedExplanationOrdersItsEvidence(t *testing.T) {
	sig := fakeSignals{co: map[[2]int]float64{{1, 3}: 5}, trending: []int{4, 3}}
	e := explainer(t, sig)
	p := e.NewProfile(Request{History: []int{0, 1, 4}, Query: "heist thriller"})
	ev := []Evidence{
		hist(1, 0.4, 3, 12), // GoldenEye: co-occurrence 5
		hist(4, 0.9, 3, 20), // Fargo: moved most, no likeness
		{Source: FromQuery, Row: -1, Drop: 0.2, Rank: 3, RankWithout: 40}, // the query
	}
	got := e.Explain(p, 3, ev, true)
	want := []Explanation{
		{Context, "context_query", `Matches your search "heist thriller".`, []string{"query"},
			map[string]float64{"score_drop": 0.2, "rank": 3, "rank_without": 40}},
		{Similarity, "similarity_history", "Chosen because Fargo (1996) is in your history.", []string{"5"},
			map[string]float64{"score_drop": 0.9, "rank": 3, "rank_without": 20}},
		{Similarity, "similarity_cooccurrence", "People who liked GoldenEye (1995) also liked Heat (1995) (5 of them).", []string{"2"},
			map[string]float64{"score_drop": 0.4, "rank": 3, "rank_without": 12, "co_occurrence": 5}},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Heat, detailed:\n got %+v\nwant %+v", got, want)
	}
	// short: the strongest reason only
	if short := e.Explain(p, 3, ev, false); !reflect.DeepEqual(short, want[:1]) {
		t.Fatalf("Heat, short: %+v", short)
	}
	// with room left, preference (Thriller: GoldenEye and Fargo, 2 of 3) and trending (#2) follow
	got = e.Explain(p, 3, ev[:1], true)
	if len(got) != 3 || got[1].Kind != Preference || got[1].Text != "2 of the 3 titles in your history are Thriller, like this one." ||
		got[2].Template != "context_trending" || got[2].Values["trending_rank"] != 2 {
		t.Fatalf("Heat with one piece of evidence: %+v", got)
	}
}

// Evidence is cited only when leaving it out moves the item down and costs it at least
// MinDrop; content similarity is claimed only above MinSimilarity.
func TestOnlyStrongEvidenceIsCited(t *testing.T) {
	e := explainer(t, nil)
	p := e.NewProfile(Request{History: []int{0, 2}})
	for name, ev := range map[string]Evidence{
		"rank unchanged":   hist(2, 0.5, 4, 4),
		"rank improved":    hist(2, 0.5, 4, 3),
		"drop too small":   hist(2, DefaultMinDrop/2, 4, 9),
		"score rose (neg)": hist(2, -0.3, 4, 9),
	} {
		got := e.Explain(p, 5, []Evidence{ev}, true)
		if len(got) != 1 || got[0].Kind != General {
			t.Errorf("%s: %+v, want the general sentence alone", name, got)
		}
	}
	// Aladdin moved Toy Story... content close (0.8): "similar to"
	got := e.Explain(p, 0, []Evidence{hist(2, 0.3, 1, 5)}, false)
	if len(got) != 1 || got[0].Template != "similarity_embedding" || got[0].Values["similarity"] != 0.8 || got[0].Evidence[0] != "3" {
		t.Fatalf("Toy Story: %+v", got)
	}
	// Aladdin moved Jaws: content far (0.1): no likeness is claimed
	got = e.Explain(p, 5, []Evidence{hist(2, 0.3, 1, 5)}, false)
	if len(got) != 1 || got[0].Template != "similarity_history" || strings.Contains(got[0].Text, "Similar") {
		t.Fatalf("Jaws: %+v", got)
	}
}

func TestImageAndAudioContext(t *testing.T) {
	e := explainer(t, nil)
	for src, want := range map[Source]string{FromImage: "Looks like the image you sent.", FromAudio: "Matches what you asked for by voice."} {
		p := e.NewProfile(Request{})
		got := e.Explain(p, 4, []Evidence{{Source: src, Row: -1, Drop: 1, Rank: 1, RankWithout: 7}}, false)
		if len(got) != 1 || got[0].Text != want || got[0].Evidence[0] != string(src) || got[0].Kind != Context {
			t.Fatalf("%s: %+v", src, got)
		}
	}
}

// A preference needs a measurable share of the history: two items and PreferenceShare of it.
func TestPreferenceNeedsAShareOfTheHistory(t *testing.T) {
	e := explainer(t, nil)
	long := []int{0, 1, 4, 5, 5, 5, 5, 5, 5, 5} // Action: GoldenEye + 7 Jaws = 8 of 10; Crime: 1
	got := e.Explain(e.NewProfile(Request{History: long}), 3, nil, true)
	if len(got) != 1 || got[0].Kind != Preference || !reflect.DeepEqual(got[0].Evidence, []string{"Action"}) || got[0].Values["share"] != 0.8 {
		t.Fatalf("Heat: %+v", got)
	}
	got = e.Explain(e.NewProfile(Request{History: []int{0, 1, 2}}), 4, nil, true) // Fargo: no shared category
	if len(got) != 1 || got[0].Kind != General {
		t.Fatalf("Fargo: %+v", got)
	}
}

func TestTemplatesParse(t *testing.T) {
	e := explainer(t, nil)
	for name := range Templates {
		if e.templates[name] == nil {
			t.Errorf("template %s missing", name)
		}
	}
}
